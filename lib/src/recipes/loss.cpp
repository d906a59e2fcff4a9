// Loss scalers as recipes: one scale for every tensor of a step, and an overflow anywhere skips
// the optimizer step. The algorithms and their upstream sources are in scaler.cpp; this file
// only reads their specs (upstream argument names first) and steps them.
#include <cmath>
#include <vector>

#include "fpscope/scaler.hpp"
#include "recipes.hpp"

namespace fpscope::detail {
namespace {

class loss_recipe final : public recipe {
 public:
  explicit loss_recipe(std::unique_ptr<fpscope::loss_scaler> s) : s_(std::move(s)) {}
  std::string describe() const override { return s_->describe(); }
  std::string_view default_format() const override { return "fp16"; }
  std::string_view default_profile() const override { return "ieee"; }
  void bind(const conversion&) override {}
  bool loss_scaler() const override { return true; }
  double scale(const tensor_meta&) override { return s_->scale(); }
  bool end_step(std::span<const tensor_meta>, bool overflow) override { return s_->update(overflow); }

 private:
  std::unique_ptr<fpscope::loss_scaler> s_;
};

// The constructors check what upstream's constructors assert; their messages are one line.
template <class Scaler, class Options>
std::unique_ptr<fpscope::loss_scaler> construct(const Options& o) {
  try {
    return std::make_unique<Scaler>(o);
  } catch (const option_error&) {
    throw;
  } catch (const std::invalid_argument& e) {
    throw option_error(e.what());
  }
}

// ---- each scaler's keys: one definition for parsing and for --help ----

std::vector<spec_key> static_keys(double& scale) {
  // apex's LossScaler(scale): the replay multiplies by it in float32.
  return {{{"scale"}, spec_key::kind::number, set_scale("static", "scale", scale), "S"}};
}

std::vector<spec_key> torch_keys(torch_scaler_options& o) {
  // torch.amp.GradScaler(init_scale, growth_factor, backoff_factor, growth_interval); the scale
  // is a float32 tensor, the factors Python floats.
  return {{{"init_scale", "init"}, spec_key::kind::number, set_scale("torch", "init_scale", o.init_scale), "2^16"},
          {{"growth_factor", "growth"}, spec_key::kind::number, set_number("torch", "growth_factor", o.growth_factor), "2"},
          {{"backoff_factor", "backoff"}, spec_key::kind::number, set_number("torch", "backoff_factor", o.backoff_factor), "0.5"},
          {{"growth_interval", "interval"}, spec_key::kind::integer,
           set_integer("torch", "growth_interval", o.growth_interval, 1, std::numeric_limits<int>::max()), "2000"}};
}

std::vector<spec_key> deepspeed_keys(deepspeed_scaler_options& o, bool& init_given) {
  // ds_config "fp16": initial_scale_power, loss_scale_window, hysteresis, consecutive_hysteresis,
  // min_loss_scale; DynamicLossScaler's own names (init_scale, scale_window, delayed_shift,
  // min_scale, raise_error_at_min_scale) first where the class has them. Python floats.
  const auto once = [&init_given] {
    if (init_given) throw option_error("deepspeed: init_scale and initial_scale_power given together");
    init_given = true;
  };
  return {{{"init_scale", "init"}, spec_key::kind::number,
           [once, set = set_number("deepspeed", "init_scale", o.init_scale)](std::string_view v) {
             once();
             set(v);
           },
           "2^16"},
          {{"initial_scale_power", "power"}, spec_key::kind::integer,
           [&o, once](std::string_view v) {
             once();
             o.init_scale = std::ldexp(1.0, int(parse_integer(v, "deepspeed: initial_scale_power", -1074, 1023)));
           },
           "16"},
          {{"scale_window", "loss_scale_window", "window"}, spec_key::kind::integer,
           set_integer("deepspeed", "scale_window", o.scale_window, 1, std::numeric_limits<int>::max()), "1000"},
          {{"min_scale", "min_loss_scale", "min"}, spec_key::kind::number, set_number("deepspeed", "min_scale", o.min_scale), "1"},
          {{"delayed_shift", "hysteresis"}, spec_key::kind::integer,
           set_integer("deepspeed", "delayed_shift", o.delayed_shift, 1, std::numeric_limits<int>::max()), "2"},
          {{"consecutive_hysteresis"}, spec_key::kind::boolean,
           set_boolean("deepspeed", "consecutive_hysteresis", o.consecutive_hysteresis)},
          {{"raise_error_at_min_scale"}, spec_key::kind::boolean,
           set_boolean("deepspeed", "raise_error_at_min_scale", o.raise_error_at_min_scale)}};
}

std::vector<spec_key> megatron_keys(megatron_scaler_options& o) {
  // DynamicGradScaler(initial_scale, min_scale, growth_factor, backoff_factor, growth_interval,
  // hysteresis), float32 tensors; the command line's --initial-loss-scale etc. as aliases.
  return {{{"initial_scale", "initial_loss_scale", "init"}, spec_key::kind::number,
           set_scale("megatron", "initial_scale", o.initial_scale), "2^32"},
          {{"min_scale", "min_loss_scale", "min"}, spec_key::kind::number, set_scale("megatron", "min_scale", o.min_scale), "1"},
          {{"growth_factor", "growth"}, spec_key::kind::number, set_number("megatron", "growth_factor", o.growth_factor), "2"},
          {{"backoff_factor", "backoff"}, spec_key::kind::number, set_number("megatron", "backoff_factor", o.backoff_factor), "0.5"},
          {{"growth_interval", "loss_scale_window", "interval", "window"}, spec_key::kind::integer,
           set_integer("megatron", "growth_interval", o.growth_interval, 1, std::numeric_limits<int>::max()), "1000"},
          {{"hysteresis"}, spec_key::kind::integer,
           set_integer("megatron", "hysteresis", o.hysteresis, 1, std::numeric_limits<int>::max()), "2"}};
}

std::unique_ptr<fpscope::loss_scaler> make_static(std::string_view rest) {
  double scale = 0;
  bool given = false;
  auto keys = static_keys(scale);
  auto set = keys[0].set;
  keys[0].set = [&](std::string_view v) {
    set(v);
    given = true;
  };
  parse_spec_keys("static", rest, keys, keys[0].set);
  if (!given) throw option_error("static: needs a scale: static:S");
  return construct<static_loss_scaler>(scale);
}

std::unique_ptr<fpscope::loss_scaler> make_torch(std::string_view rest) {
  torch_scaler_options o;
  parse_spec_keys("torch", rest, torch_keys(o));
  return construct<torch_grad_scaler>(o);
}

std::unique_ptr<fpscope::loss_scaler> make_deepspeed(std::string_view rest) {
  deepspeed_scaler_options o;
  bool init_given = false;
  parse_spec_keys("deepspeed", rest, deepspeed_keys(o, init_given));
  return construct<deepspeed_loss_scaler>(o);
}

std::unique_ptr<fpscope::loss_scaler> make_megatron(std::string_view rest) {
  megatron_scaler_options o;
  parse_spec_keys("megatron", rest, megatron_keys(o));
  return construct<megatron_grad_scaler>(o);
}

template <std::unique_ptr<fpscope::loss_scaler> (*Make)(std::string_view)>
std::unique_ptr<recipe> as_recipe(std::string_view, std::string_view rest) {
  return std::make_unique<loss_recipe>(Make(rest));
}

}  // namespace

const entry static_entry{
    "static", "a constant loss scale; an overflow is reported, never skipped (apex LossScaler)", "",
    [] {
      double s = 0;
      return "S|" + describe_keys(static_keys(s));
    },
    &as_recipe<&make_static>};

const entry torch_entry{"torch", "torch.amp.GradScaler", "",
                        [] {
                          torch_scaler_options o;
                          return describe_keys(torch_keys(o));
                        },
                        &as_recipe<&make_torch>};

const entry deepspeed_entry{
    "deepspeed", "DeepSpeed DynamicLossScaler",
    "deepspeed/runtime/fp16/loss_scaler.py DynamicLossScaler, which ZeRO stages 1-3 use; the stage-0 "
    "fp16 optimizers (FP16_Optimizer, FP16_UnfusedOptimizer) update the scale in their own _update_scale, "
    "which ignores hysteresis and never raises at the minimum scale: replay those with hysteresis=1,"
    "raise_error_at_min_scale=false",
    [] {
      deepspeed_scaler_options o;
      bool b = false;
      return describe_keys(deepspeed_keys(o, b));
    },
    &as_recipe<&make_deepspeed>};

const entry megatron_entry{"megatron", "Megatron-core DynamicGradScaler", "",
                           [] {
                             megatron_scaler_options o;
                             return describe_keys(megatron_keys(o));
                           },
                           &as_recipe<&make_megatron>};

}  // namespace fpscope::detail

namespace fpscope {

std::unique_ptr<loss_scaler> make_loss_scaler(std::string_view spec) {
  const auto [name, rest] = split_spec(spec);
  if (name == "static") return detail::make_static(rest);
  if (name == "torch") return detail::make_torch(rest);
  if (name == "deepspeed") return detail::make_deepspeed(rest);
  if (name == "megatron") return detail::make_megatron(rest);
  throw option_error("unknown loss scaler " + quoted(name) + " (known: static:S, torch, deepspeed, megatron)");
}

}  // namespace fpscope
