// Transformer Engine's DelayedScaling as a recipe: a scale per tensor from its own amax history
// (fpscope::te_delayed, scaler.cpp, models the fused update TE's PyTorch autocast runs by
// default). What the history receives is the amax TE computes, not the trace's.
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

// DelayedScaling(margin, amax_history_len, amax_compute_algo), TE's recipe.py.
struct options {
  te_delayed_options te;
  int algo = 0;  // 0 max, 1 most_recent
};

std::vector<spec_key> keys(options& o) {
  return {{{"amax_history_len", "history"}, spec_key::kind::integer,
           set_integer("te-delayed", "amax_history_len", o.te.amax_history_len, 1, 1 << 20), "1024"},
          {{"amax_compute_algo", "algo"}, spec_key::kind::choice,
           set_choice("te-delayed", "amax_compute_algo", o.algo, {"max", "most_recent"}), "max|most_recent"},
          {{"margin"}, spec_key::kind::integer, set_integer("te-delayed", "margin", o.te.margin, -64, 64), "0"}};
}

class te_delayed_recipe final : public recipe {
 public:
  explicit te_delayed_recipe(const options& o) : o_(o.te) {
    o_.amax_compute = o.algo ? te_delayed_options::algo::most_recent : te_delayed_options::algo::max;
  }
  std::string describe() const override {
    return "te-delayed (amax_history_len " + std::to_string(o_.amax_history_len) + ", amax_compute_algo " +
           (o_.amax_compute == te_delayed_options::algo::max ? "max" : "most_recent") + ", margin " +
           std::to_string(o_.margin) + ")";
  }
  // Format.HYBRID, TE's default: gradients in E5M2.
  std::string_view default_format() const override { return "e5m2"; }
  std::string_view default_profile() const override { return "cuda"; }
  void bind(const conversion& c) override { fp8_max_ = decode(c.fmt.max_finite_bits(), c.fmt); }
  double scale(const tensor_meta& t) override { return state(t.name).scale(); }
  bool end_step(std::span<const tensor_meta> tensors, bool) override {
    for (const auto& t : tensors) state(t.name).update(te_amax(t));
    return false;  // FP8 recipes never skip a step
  }

 private:
  // TE reduces amax as fmaxf(|x|) over every element (transformer_engine/common/recipe/
  // current_scaling.cu and util/vectorized_pointwise.h): one inf element makes it inf, while a
  // NaN is dropped by fmaxf. The trace's @amax is over the finite elements only (docs/trace.md),
  // so its @infs decides. A tensor of NaNs only gives 0, as fmaxf from 0 does.
  static double te_amax(const tensor_meta& t) { return t.infs ? std::numeric_limits<double>::infinity() : t.amax; }

  te_delayed& state(std::string_view name) {
    auto it = state_.find(name);
    if (it == state_.end()) it = state_.emplace(std::string(name), te_delayed(o_, fp8_max_)).first;
    return it->second;
  }

  te_delayed_options o_;
  double fp8_max_ = 0;
  std::map<std::string, te_delayed, std::less<>> state_;
};

}  // namespace

const entry te_delayed_entry{
    "te-delayed", "Transformer Engine DelayedScaling: per-tensor scales from an amax history",
    "transformer_engine/common/recipe/delayed_scaling.cu kernel_bulk, the fused update TE's PyTorch autocast runs "
    "by default (the unfused path rolls the history on a zero amax and propagates NaN); the amax is TE's, "
    "fmaxf(|x|) over every element (inf when any element is +-inf). TE casts output gradients to E5M2; "
    "here the scale is applied to the recorded tensors (parameter gradients)",
    &keys_text<options>, &parse_recipe<options, te_delayed_recipe>};

}  // namespace fpscope::detail
