// OCP MX block scaling as a recipe: every `block_size` consecutive elements of the flattened
// tensor share an E8M0 scale 2^e chosen from the block's amax (fpscope::mx_scale_exponent,
// scaler.cpp: OCP/torchao FLOOR, CEIL, EVEN, and NVIDIA's RCEIL), and the elements are cast at
// scale 2^-e.
#include <cmath>
#include <optional>
#include <vector>

#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

constexpr std::string_view modes[] = {"floor", "ceil", "rceil", "even"};

struct options {
  int mode = 0;  // index into modes, as mx_rounding
  int block = 32;
};

std::vector<spec_key> keys(options& o) {
  // torchao's to_mx(data_hp, elem_dtype, block_size, scaling_mode).
  return {{{"scaling_mode", "rounding"}, spec_key::kind::choice,
           set_choice("mx", "scaling_mode", o.mode, {modes[0], modes[1], modes[2], modes[3]}), "floor|ceil|rceil|even"},
          {{"block_size"}, spec_key::kind::integer, set_integer("mx", "block_size", o.block, 1, 1 << 20), "32"}};
}

class mx_recipe final : public recipe {
 public:
  explicit mx_recipe(options o) : o_(o) {}
  std::string describe() const override {
    return "mx (" + std::to_string(o_.block) + "-element blocks of the flattened tensor, E8M0 scale, scaling_mode " +
           std::string(modes[o_.mode]) + ")";
  }
  std::string_view default_format() const override { return "e4m3"; }
  std::string_view default_profile() const override { return "cuda"; }
  void bind(const conversion& c) override {
    c_ = c;
    try {
      (void)mx_scale_exponent(1.0f, c.fmt, mode());
    } catch (const std::invalid_argument& e) {
      throw option_error(std::string("mx: ") + e.what());
    }
  }
  bool per_block() const override { return true; }
  double scale(const tensor_meta&) override { return 1; }
  bool end_step(std::span<const tensor_meta>, bool) override { return false; }

  block_counts count_blocks(const tensor_meta&, std::span<const float> v) override {
    block_counts out;
    double log_sum = 0;
    const std::size_t b = std::size_t(o_.block);
    for (std::size_t lo = 0; lo < v.size(); lo += b) {
      const auto block = v.subspan(lo, std::min(b, v.size() - lo));
      const int e = mx_scale_exponent(amax(block), c_.fmt, mode());
      ++out.blocks;
      if (e == mx_scale_nan) {  // the block's E8M0 scale is NaN: every element of the block is lost
        for (const float x : block)
          ++out.counts[!std::isfinite(x) ? cast_class::nonfinite : x == 0 ? cast_class::zero : cast_class::overflow];
        continue;
      }
      const auto& t = thresholds(e);
      for (const float x : block) ++out.counts[threshold_class(t, x)];
      log_sum -= e;
    }
    out.scale = out.blocks ? std::exp2(log_sum / double(out.blocks)) : 1;
    return out;
  }

 private:
  mx_rounding mode() const { return static_cast<mx_rounding>(o_.mode); }

  // The block amax as each implementation reduces it: torchao (floor, ceil, even) takes
  // torch.amax(torch.abs(x)), where a NaN or an inf wins; TE (rceil) reduces with fmaxf, which
  // drops NaN and keeps inf (transformer_engine/common/util/cast_kernels.cuh).
  float amax(std::span<const float> block) const {
    float finite = 0;
    bool inf = false, nan = false;
    for (const float x : block) {
      if (std::isnan(x)) nan = true;
      else if (std::isinf(x)) inf = true;
      else finite = std::max(finite, std::fabs(x));
    }
    if (nan && mode() != mx_rounding::rceil) return std::nanf("");
    return inf ? INFINITY : finite;
  }

  // The cast's thresholds at scale 2^-e, found once per exponent.
  const cast_thresholds<std::uint32_t>& thresholds(int e) {
    auto& slot = cache_[std::size_t(e + 127)];
    if (!slot) slot = thresholds32({c_.fmt, c_.pol, std::ldexp(1.0f, -e)});
    return *slot;
  }

  options o_;
  conversion c_;
  std::array<std::optional<cast_thresholds<std::uint32_t>>, 256> cache_;
};

}  // namespace

const entry mx_entry{"mx", "OCP MX: an E8M0 scale per block of the flattened tensor",
                     "blocks of block_size consecutive elements of the flattened (row-major) tensor, as torchao's "
                     "to_mx groups a tensor's last dimension; scaling_mode floor is the OCP MX v1.0 rule (torchao "
                     "FLOOR), rceil NVIDIA's (cuBLAS, Transformer Engine MXFP8BlockScaling)",
                     &keys_text<options>, &parse_recipe<options, mx_recipe>};

}  // namespace fpscope::detail
