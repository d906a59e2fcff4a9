// Transformer Engine's Float8CurrentScaling as a recipe: each tensor's scale from its own amax at
// this step (fpscope::te_current_scale, scaler.cpp).
#include <cmath>
#include <limits>
#include <vector>

#include "fpscope/convert.hpp"
#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

struct options {
  bool pow2 = false;
  double epsilon = 0;
};

std::vector<spec_key> keys(options& o) {
  // QParams(power_2_scale, amax_epsilon), TE's recipe.py.
  return {{{"power_2_scale", "pow2"}, spec_key::kind::boolean, set_boolean("te-current", "power_2_scale", o.pow2)},
          {{"amax_epsilon"}, spec_key::kind::number,
           [&o](std::string_view v) {
             o.epsilon = parse_number(v, "te-current: amax_epsilon");
             if (!(o.epsilon >= 0) || !std::isfinite(float(o.epsilon)))
               throw option_error("te-current: amax_epsilon must be a finite float32 >= 0, not " + quoted(v));
           },
           "0"}};
}

class te_current_recipe final : public recipe {
 public:
  explicit te_current_recipe(options o) : o_(o) {}
  std::string describe() const override {
    std::string s = "te-current (per-tensor current scaling";
    if (o_.pow2) s += ", power-of-two scales";
    if (o_.epsilon > 0) s += ", amax_epsilon " + number_text(o_.epsilon);
    return s + ")";
  }
  std::string_view default_format() const override { return "e5m2"; }
  std::string_view default_profile() const override { return "cuda"; }
  void bind(const conversion& c) override { fp8_max_ = decode(c.fmt.max_finite_bits(), c.fmt); }
  // The amax TE computes: fmaxf(|x|) over every element, inf when any element is +-inf
  // (current_scaling.cu); compute_scale_from_amax then gives scale 1 for it.
  double scale(const tensor_meta& t) override {
    const double amax = t.infs ? std::numeric_limits<double>::infinity() : t.amax;
    return te_current_scale(amax, fp8_max_, o_.pow2, o_.epsilon);
  }
  bool end_step(std::span<const tensor_meta>, bool) override { return false; }

 private:
  options o_;
  double fp8_max_ = 0;
};

}  // namespace

const entry te_current_entry{
    "te-current", "Transformer Engine Float8CurrentScaling: per-tensor scales from this step's amax",
    "transformer_engine/common/recipe/current_scaling.cu + recipe_common.cuh compute_scale_from_amax; the amax "
    "is TE's, fmaxf(|x|) over every element (an inf element gives scale 1)",
    &keys_text<options>, &parse_recipe<options, te_current_recipe>};

}  // namespace fpscope::detail
