// 1x128 / 128x128 tile scaling (DeepSeek-V3; Transformer Engine Float8BlockScaling) as a recipe:
// a float32 scale per tile from its amax (fpscope::block_scale, scaler.cpp), over the tensor seen
// as a matrix of shape (count / last dimension, last dimension).
#include <cmath>
#include <map>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

struct options {
  int tile = 0;  // 0: 1x128, 1: 128x128
  bool pow2 = false;
};

std::vector<spec_key> keys(options& o) {
  return {{{"tile"}, spec_key::kind::choice, set_choice("block", "tile", o.tile, {"1x128", "128x128"}), "1x128|128x128"},
          {{"power_2_scale", "pow2"}, spec_key::kind::boolean, set_boolean("block", "power_2_scale", o.pow2)}};
}

class block_recipe final : public recipe {
 public:
  explicit block_recipe(options o) : o_(o) {}
  std::string describe() const override {
    return std::string("block (") + (o_.tile ? "128x128" : "1x128") + " tiles" + (o_.pow2 ? ", power-of-two scales" : "") + ")";
  }
  std::string_view default_format() const override { return "e4m3"; }
  std::string_view default_profile() const override { return "cuda"; }
  void bind(const conversion& c) override {
    c_ = c;
    fp8_max_ = decode(c.fmt.max_finite_bits(), c.fmt);
  }
  bool per_block() const override { return true; }
  double scale(const tensor_meta&) override { return 1; }
  bool end_step(std::span<const tensor_meta>, bool) override { return false; }

  block_counts count_blocks(const tensor_meta& t, std::span<const float> v) override {
    block_counts out;
    const std::size_t cols = t.shape.empty() ? 1 : std::max<std::size_t>(std::size_t(t.shape.back()), 1);
    const std::size_t rows = v.size() / cols;
    const std::size_t th = o_.tile ? 128 : 1;
    double log_sum = 0;
    for (std::size_t r0 = 0; r0 < rows; r0 += th)
      for (std::size_t c0 = 0; c0 < cols; c0 += 128) {
        const std::size_t r1 = std::min(rows, r0 + th), c1 = std::min(cols, c0 + 128);
        double amax = 0;  // over the finite elements
        for (std::size_t i = r0; i < r1; ++i)
          for (std::size_t j = c0; j < c1; ++j)
            if (std::isfinite(v[i * cols + j])) amax = std::max(amax, double(std::fabs(v[i * cols + j])));
        const float s = kernel_scale(block_scale(amax, fp8_max_, o_.pow2));
        const auto& th32 = thresholds(s);
        for (std::size_t i = r0; i < r1; ++i)
          for (std::size_t j = c0; j < c1; ++j) ++out.counts[threshold_class(th32, v[i * cols + j])];
        log_sum += std::log2(s);
        ++out.blocks;
      }
    out.scale = out.blocks ? std::exp2(log_sum / double(out.blocks)) : 1;
    return out;
  }

 private:
  const cast_thresholds<std::uint32_t>& thresholds(float s) {
    auto it = cache_.find(s);
    if (it == cache_.end()) it = cache_.emplace(s, thresholds32({c_.fmt, c_.pol, s})).first;
    return it->second;
  }

  options o_;
  conversion c_;
  double fp8_max_ = 0;
  std::map<float, cast_thresholds<std::uint32_t>> cache_;
};

}  // namespace

const entry block_entry{"block", "1x128 / 128x128 tiles with a float32 scale each (DeepSeek-V3 style)",
                        "tiles of the tensor as a matrix (count / last dimension) x (last dimension); the tile amax "
                        "is over its finite elements",
                        &keys_text<options>, &parse_recipe<options, block_recipe>};

}  // namespace fpscope::detail
