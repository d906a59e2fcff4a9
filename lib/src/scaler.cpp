#include "fpscope/scaler.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>

namespace fpscope {
namespace {

// Shortest round-trip text of a double ("65536", "0.5", "4294967296"). A float32-held value is
// printed as the double it widens to, which keeps integers exact (float32 to_chars would print
// 2^32 as "4294967300").
std::string num(double v) {
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// Echoes user text inside a one-line message: control characters would break the line.
std::string clean(std::string_view s) {
  std::string out;
  for (const char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}
std::string quoted(std::string_view s) {
  std::string out(1, '\'');  // built by appends: GCC 12's -Wrestrict misfires on "'" + string
  out += clean(s);
  out += '\'';
  return out;
}

bool positive_finite_float(double v) {
  const auto f = static_cast<float>(v);
  return v > 0 && std::isfinite(f) && f > 0;
}

// ---- spec parsing ----

// One option of a scaler spec: its upstream name first, then the aliases accepted for it.
struct option {
  std::vector<std::string_view> names;
  std::function<void(std::string_view value)> set;
};

class spec_values {
 public:
  explicit spec_values(std::string_view scaler) : scaler_(scaler) {}
  [[noreturn]] void fail(const std::string& what) const { throw std::invalid_argument(std::string(scaler_) + ": " + what); }
  // "2^K" or a decimal number; inf and NaN come back as such for the caller's range checks.
  double number(std::string_view key, std::string_view v) const {
    double out = 0;
    if (v.substr(0, 2) == "2^") {
      int k = 0;
      const auto r = std::from_chars(v.data() + 2, v.data() + v.size(), k);
      if (r.ec == std::errc() && r.ptr == v.data() + v.size() && v.size() > 2 && k >= -1074 && k <= 1023)
        return std::ldexp(1.0, k);
    } else {
      const auto r = std::from_chars(v.data(), v.data() + v.size(), out);
      if (r.ec == std::errc() && r.ptr == v.data() + v.size() && !v.empty()) return out;
    }
    fail(std::string(key) + "=" + clean(v) + " is not a number (decimal or 2^K)");
  }
  int positive_int(std::string_view key, std::string_view v) const {
    const double d = number(key, v);
    if (!(d >= 1 && d <= std::numeric_limits<int>::max() && d == std::floor(d)))
      fail(std::string(key) + " must be a positive integer, not " + quoted(v));
    return static_cast<int>(d);
  }
  bool boolean(std::string_view key, std::string_view v) const {
    if (v == "true" || v == "1" || v == "on" || v == "yes") return true;
    if (v == "false" || v == "0" || v == "off" || v == "no") return false;
    fail(std::string(key) + " is true or false, not " + quoted(v));
  }

 private:
  std::string_view scaler_;
};

// Applies "key=value,..." to `opts`; a bare first item goes to `bare` when given.
void apply_options(std::string_view rest, const spec_values& err, std::vector<option>& opts,
                   const std::function<void(std::string_view)>& bare = {}) {
  std::vector<bool> seen(opts.size(), false);
  bool first = true;
  for (std::size_t at = 0; at <= rest.size();) {
    const std::size_t comma = std::min(rest.find(',', at), rest.size());
    const std::string_view item = rest.substr(at, comma - at);
    at = comma + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      if (first && bare) {
        bare(item);
        first = false;
        continue;
      }
      err.fail(quoted(item) + " is not key=value");
    }
    first = false;
    const std::string_view key = item.substr(0, eq), value = item.substr(eq + 1);
    const auto it = std::find_if(opts.begin(), opts.end(), [&](const option& o) {
      return std::find(o.names.begin(), o.names.end(), key) != o.names.end();
    });
    if (it == opts.end()) {
      std::string known;
      for (const auto& o : opts) {
        if (!known.empty()) known += ", ";
        for (std::size_t i = 0; i < o.names.size(); ++i) {
          if (i) known += '|';
          known.append(o.names[i]);
        }
      }
      err.fail("unknown option " + quoted(key) + " (known: " + known + ")");
    }
    const auto i = static_cast<std::size_t>(it - opts.begin());
    if (seen[i]) err.fail(std::string(it->names.front()) + " given twice");
    seen[i] = true;
    it->set(value);
  }
}

// ---- MX ----

// TE's float_to_e8m0 (transformer_engine/common/util/ptx.cuh, the pre-Blackwell path, which
// matches cvt.rp.satfinite.ue8m0x2.f32): round a float32 up to a power of two, E8M0 byte out.
// NaN -> 0xFF; inf and anything above 2^127 saturate to 0xFE; 0 and values up to 2^-127 (the
// E8M0 byte 0) give 0.
std::uint8_t float_to_e8m0(float val) {
  if (std::isnan(val)) return 0xFF;
  if (std::isinf(val)) return 0xFE;
  if (val == 0.0f) return 0x00;
  const auto u = std::bit_cast<std::uint32_t>(val);
  auto exponent = static_cast<std::uint8_t>(u >> 23);
  const std::uint32_t mantissa = u & 0x7FFFFFu;
  if ((mantissa > 0 && exponent != 0xFE) && !(exponent == 0 && mantissa <= 0x400000u)) ++exponent;
  return exponent;
}

// Mantissa bits of the MX element formats, known by (emax, max finite): torchao's MBITS_* table.
int element_mbits(int emax_elem, double elem_max) {
  struct elem {
    int emax;
    double max;
    int mbits;
  };
  static constexpr elem known[] = {{8, 448.0, 3},  {15, 57344.0, 2}, {4, 28.0, 2},
                                   {2, 7.5, 3},    {2, 6.0, 1},      {7, 240.0, 3}};
  for (const auto& e : known)
    if (e.emax == emax_elem && e.max == elem_max) return e.mbits;
  throw std::invalid_argument("mx_scale_exponent: rounding even needs the element's mantissa bits (emax " +
                              std::to_string(emax_elem) + ", max " + num(elem_max) + " is no known MX element format)");
}

}  // namespace

// ---- static ----

static_loss_scaler::static_loss_scaler(double scale) : scale_(scale) {
  if (!(scale > 0) || !std::isfinite(scale)) throw std::invalid_argument("static: the scale must be positive and finite");
}

std::string static_loss_scaler::describe() const { return "static (scale " + num(scale_) + ")"; }

// ---- torch ----

torch_grad_scaler::torch_grad_scaler(const torch_scaler_options& o)
    : o_(o), scale_(static_cast<float>(o.init_scale)) {  // torch.full((), init_scale, dtype=float32)
  // GradScaler.__init__ asserts growth_factor > 1.0 and backoff_factor < 1.0; fpscope also
  // rejects what could never be a scale (a backoff <= 0, a scale that is no positive float32,
  // an interval that never completes).
  if (!positive_finite_float(o.init_scale)) throw std::invalid_argument("torch: init_scale must be a positive finite float32");
  if (!(o.growth_factor > 1) || !std::isfinite(o.growth_factor)) throw std::invalid_argument("torch: growth_factor must be > 1");
  if (!(o.backoff_factor > 0 && o.backoff_factor < 1)) throw std::invalid_argument("torch: backoff_factor must be in (0, 1)");
  if (o.growth_interval < 1) throw std::invalid_argument("torch: growth_interval must be >= 1");
}

// aten/src/ATen/native/cpu/AmpGradScalerKernels.cpp _amp_update_scale_cpu_kernel (the CUDA
// amp_update_scale_cuda_kernel is the same): the float32 scale times a double factor, rounded
// back to float32; growth is refused when the new scale is not finite; no lower bound.
bool torch_grad_scaler::update(bool overflow) {
  if (overflow) {
    scale_ = static_cast<float>(static_cast<double>(scale_) * o_.backoff_factor);
    growth_tracker_ = 0;
    return true;  // GradScaler._maybe_opt_step skips optimizer.step() when found_inf
  }
  const int successful = growth_tracker_ + 1;
  if (successful == o_.growth_interval) {
    const auto new_scale = static_cast<float>(static_cast<double>(scale_) * o_.growth_factor);
    if (std::isfinite(new_scale)) scale_ = new_scale;  // "Do not grow the scale past fp32 bounds to inf."
    growth_tracker_ = 0;
  } else {
    growth_tracker_ = successful;
  }
  return false;
}

std::string torch_grad_scaler::describe() const {
  return "torch (init " + num(static_cast<double>(static_cast<float>(o_.init_scale))) + ", growth " + num(o_.growth_factor) + ", backoff " +
         num(o_.backoff_factor) + ", interval " + std::to_string(o_.growth_interval) + ")";
}

// ---- deepspeed ----

deepspeed_loss_scaler::deepspeed_loss_scaler(const deepspeed_scaler_options& o)
    : o_(o), cur_scale_(o.init_scale), cur_hysteresis_(o.delayed_shift) {
  // The checks of loss_scaler.py _validated_dynamic_loss_args.
  if (!(o.init_scale > 0) || !std::isfinite(o.init_scale)) throw std::invalid_argument("deepspeed: init_scale must be positive and finite");
  if (o.scale_window < 1) throw std::invalid_argument("deepspeed: scale_window must be a positive integer");
  if (o.delayed_shift < 1) throw std::invalid_argument("deepspeed: delayed_shift (hysteresis) must be a positive integer");
  if (!(o.min_scale > 0) || !std::isfinite(o.min_scale)) throw std::invalid_argument("deepspeed: min_scale must be positive and finite");
}

// deepspeed/runtime/fp16/loss_scaler.py DynamicLossScaler.update_scale. Hysteresis: an overflow
// only spends one unit of cur_hysteresis until one is left; from then on every overflow backs
// off. cur_hysteresis refills at each growth (or at every clean step with
// consecutive_hysteresis). Growth needs (cur_iter - last_overflow_iter - 1) to be a positive
// multiple of scale_window, so the first growth after an overflow (or the start) comes after
// scale_window + 1 clean steps, the following ones every scale_window.
bool deepspeed_loss_scaler::update(bool overflow) {
  constexpr double scale_factor = 2.0;  // DynamicLossScaler.__init__: self.scale_factor = 2.0
  if (overflow) {
    if (o_.delayed_shift == 1 || cur_hysteresis_ == 1) {
      if (cur_scale_ == o_.min_scale && o_.raise_error_at_min_scale)
        throw scaler_error("Current loss scale already at minimum - cannot decrease scale anymore. Exiting run.");
      cur_scale_ = std::max(cur_scale_ / scale_factor, o_.min_scale);
    } else {
      cur_hysteresis_ -= 1;
    }
    last_overflow_iter_ = cur_iter_;
  } else {
    if (o_.consecutive_hysteresis) cur_hysteresis_ = o_.delayed_shift;
    const long long stable_interval = (cur_iter_ - last_overflow_iter_) - 1;
    if (stable_interval > 0 && stable_interval % o_.scale_window == 0) {
      if (!o_.consecutive_hysteresis) cur_hysteresis_ = o_.delayed_shift;
      cur_scale_ *= scale_factor;
    }
  }
  cur_iter_ += 1;
  return overflow;  // FP16_Optimizer / ZeRO step(): an overflow skips the step
}

std::string deepspeed_loss_scaler::describe() const {
  std::string s = "deepspeed (init " + num(o_.init_scale) + ", window " + std::to_string(o_.scale_window) + ", min " +
                  num(o_.min_scale) + ", hysteresis " + std::to_string(o_.delayed_shift);
  if (o_.consecutive_hysteresis) s += ", consecutive_hysteresis";
  if (!o_.raise_error_at_min_scale) s += ", no error at min scale";
  return s + ")";
}

// ---- megatron ----

megatron_grad_scaler::megatron_grad_scaler(const megatron_scaler_options& o)
    : o_(o),
      scale_(static_cast<float>(o.initial_scale)),  // torch.tensor([x], dtype=torch.float)
      min_scale_(static_cast<float>(o.min_scale)),
      growth_factor_(static_cast<float>(o.growth_factor)),
      backoff_factor_(static_cast<float>(o.backoff_factor)),
      hysteresis_tracker_(o.hysteresis) {
  // The asserts of MegatronGradScaler / DynamicGradScaler.__init__, plus float32 range.
  if (!positive_finite_float(o.initial_scale)) throw std::invalid_argument("megatron: initial_scale must be a positive finite float32");
  if (!positive_finite_float(o.min_scale)) throw std::invalid_argument("megatron: min_scale must be a positive finite float32");
  if (!(o.min_scale <= o.initial_scale)) throw std::invalid_argument("megatron: min_scale must be <= initial_scale");
  if (!(o.growth_factor > 1) || !std::isfinite(growth_factor_)) throw std::invalid_argument("megatron: growth_factor must be > 1");
  if (!(o.backoff_factor > 0 && o.backoff_factor < 1)) throw std::invalid_argument("megatron: backoff_factor must be in (0, 1)");
  if (o.growth_interval < 1) throw std::invalid_argument("megatron: growth_interval must be > 0");
  if (o.hysteresis < 1) throw std::invalid_argument("megatron: hysteresis must be > 0");
}

// megatron/core/optimizer/grad_scaler.py DynamicGradScaler.update. The hysteresis tracker is
// refilled only by a growth, not by clean steps, and keeps counting down below 0.
bool megatron_grad_scaler::update(bool found_inf) {
  if (found_inf) {
    growth_tracker_ = 0;
    hysteresis_tracker_ -= 1;
    if (hysteresis_tracker_ <= 0) {
      const float backed_off = scale_ * backoff_factor_;  // float32 tensors
      scale_ = backed_off < min_scale_ ? min_scale_ : backed_off;  // torch.max(scale * backoff, min_scale)
    }
  } else {
    growth_tracker_ += 1;
    if (growth_tracker_ == o_.growth_interval) {
      growth_tracker_ = 0;
      hysteresis_tracker_ = o_.hysteresis;
      scale_ = scale_ * growth_factor_;  // unchecked: may become inf
    }
  }
  return found_inf;  // MixedPrecisionOptimizer.step returns early when found_inf_flag
}

std::string megatron_grad_scaler::describe() const {
  return "megatron (init " + num(static_cast<double>(static_cast<float>(o_.initial_scale))) + ", min " + num(static_cast<double>(min_scale_)) + ", growth " +
         num(static_cast<double>(growth_factor_)) + ", backoff " + num(static_cast<double>(backoff_factor_)) + ", interval " + std::to_string(o_.growth_interval) +
         ", hysteresis " + std::to_string(o_.hysteresis) + ")";
}

// ---- factory ----

std::unique_ptr<loss_scaler> make_loss_scaler(std::string_view spec) {
  const std::size_t colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  const std::string_view rest = colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
  const spec_values err(name);

  if (name == "static") {
    double scale = 0;
    bool given = false;
    const auto set = [&](std::string_view v) {
      scale = err.number("scale", v);
      given = true;
    };
    std::vector<option> opts{{{"scale"}, set}};
    apply_options(rest, err, opts, set);
    if (!given) err.fail("needs a scale: static:S");
    if (!(scale > 0) || !std::isfinite(scale)) err.fail("the scale must be positive and finite, not " + num(scale));
    return std::make_unique<static_loss_scaler>(scale);
  }
  if (name == "torch") {
    torch_scaler_options o;
    std::vector<option> opts{
        {{"init_scale", "init"}, [&](std::string_view v) { o.init_scale = err.number("init_scale", v); }},
        {{"growth_factor", "growth"}, [&](std::string_view v) { o.growth_factor = err.number("growth_factor", v); }},
        {{"backoff_factor", "backoff"}, [&](std::string_view v) { o.backoff_factor = err.number("backoff_factor", v); }},
        {{"growth_interval", "interval"}, [&](std::string_view v) { o.growth_interval = err.positive_int("growth_interval", v); }},
    };
    apply_options(rest, err, opts);
    return std::make_unique<torch_grad_scaler>(o);
  }
  if (name == "deepspeed") {
    deepspeed_scaler_options o;
    bool init_given = false;
    std::vector<option> opts{
        {{"init_scale", "init"},
         [&](std::string_view v) {
           if (init_given) err.fail("init_scale and initial_scale_power given together");
           init_given = true;
           o.init_scale = err.number("init_scale", v);
         }},
        {{"initial_scale_power", "power"},
         [&](std::string_view v) {
           if (init_given) err.fail("init_scale and initial_scale_power given together");
           init_given = true;
           const double p = err.number("initial_scale_power", v);
           if (!(p == std::floor(p) && p >= -1074 && p <= 1023)) err.fail("initial_scale_power must be an integer in [-1074, 1023]");
           o.init_scale = std::ldexp(1.0, static_cast<int>(p));  // 2**initial_scale_power
         }},
        {{"scale_window", "loss_scale_window", "window"},
         [&](std::string_view v) { o.scale_window = err.positive_int("scale_window", v); }},
        {{"min_scale", "min_loss_scale", "min"}, [&](std::string_view v) { o.min_scale = err.number("min_scale", v); }},
        {{"delayed_shift", "hysteresis"}, [&](std::string_view v) { o.delayed_shift = err.positive_int("delayed_shift", v); }},
        {{"consecutive_hysteresis"},
         [&](std::string_view v) { o.consecutive_hysteresis = err.boolean("consecutive_hysteresis", v); }},
        {{"raise_error_at_min_scale"},
         [&](std::string_view v) { o.raise_error_at_min_scale = err.boolean("raise_error_at_min_scale", v); }},
    };
    apply_options(rest, err, opts);
    return std::make_unique<deepspeed_loss_scaler>(o);
  }
  if (name == "megatron") {
    megatron_scaler_options o;
    std::vector<option> opts{
        {{"initial_scale", "initial_loss_scale", "init"},
         [&](std::string_view v) { o.initial_scale = err.number("initial_scale", v); }},
        {{"min_scale", "min_loss_scale", "min"}, [&](std::string_view v) { o.min_scale = err.number("min_scale", v); }},
        {{"growth_factor", "growth"}, [&](std::string_view v) { o.growth_factor = err.number("growth_factor", v); }},
        {{"backoff_factor", "backoff"}, [&](std::string_view v) { o.backoff_factor = err.number("backoff_factor", v); }},
        {{"growth_interval", "loss_scale_window", "interval", "window"},
         [&](std::string_view v) { o.growth_interval = err.positive_int("growth_interval", v); }},
        {{"hysteresis"}, [&](std::string_view v) { o.hysteresis = err.positive_int("hysteresis", v); }},
    };
    apply_options(rest, err, opts);
    return std::make_unique<megatron_grad_scaler>(o);
  }
  throw std::invalid_argument("unknown loss scaler " + quoted(name) + " (known: static:S, torch, deepspeed, megatron)");
}

// ---- Transformer Engine ----

te_delayed::te_delayed(te_delayed_options o, double fp8_max) : o_(o) {
  if (o.amax_history_len < 1) throw std::invalid_argument("te_delayed: amax_history_len must be >= 1");
  if (!positive_finite_float(fp8_max)) throw std::invalid_argument("te_delayed: fp8_max must be a positive finite float32");
  // amax_and_scale_update_after_reduction: scaled_max = fp8_dtype_max * std::pow(2.f, -margin),
  // in float32 (the power of two is exact; ldexp is pow's value for an integer margin).
  scaled_max_ = static_cast<float>(fp8_max) * std::ldexp(1.0f, -o.margin);
  hist_.assign(static_cast<std::size_t>(o.amax_history_len), 0.0f);
}

// transformer_engine/common/recipe/delayed_scaling.cu, amax_and_scale_update_impl::kernel_bulk
// (what TE's PyTorch fp8 autocast runs by default, through
// tex.fused_amax_and_scale_update_after_reduction). The history is rolled left by one
// (torch.roll(-1)): the current amax, in slot 0, moves to the end and the oldest entry becomes
// the zeroed slot 0. A zero current amax skips the roll (a module that did not run this step).
// "max" takes fmaxf over the whole window from 0, so a NaN entry is ignored; "most_recent" takes
// the current amax. The scale is kept when that amax is 0, inf or NaN.
void te_delayed::update(double amax) {
  const std::size_t len = hist_.size();
  hist_[0] = static_cast<float>(amax);
  const float last_amax = hist_[0];
  float window_max = 0.0f;
  if (last_amax != 0.0f) {
    for (std::size_t i = 0; i < len; ++i) {
      const float a = i < len - 1 ? hist_[i + 1] : last_amax;
      window_max = std::fmax(window_max, a);
      hist_[i] = i > 0 ? a : 0.0f;
    }
  }
  const float used = o_.amax_compute == te_delayed_options::algo::most_recent ? last_amax : window_max;
  float scale = scale_;
  if (std::isfinite(used) && used > 0) scale = scaled_max_ / used;
  // "When the amax is too tiny that the scale becoming infinite in FP32, we set the scale to the
  // max value of FP32."
  if (std::isinf(scale)) scale = std::numeric_limits<float>::max();
  scale_ = scale;
}

std::vector<double> te_delayed::history() const { return {hist_.begin() + 1, hist_.end()}; }

// transformer_engine/common/recipe/recipe_common.cuh compute_scale_from_amax with epsilon 0 and
// value_for_inf FLT_MAX (current_scaling.cu compute_scale_from_amax_kernel).
double te_current_scale(double amax, double fp8_max, bool power_of_two) {
  if (!positive_finite_float(fp8_max)) throw std::invalid_argument("te_current_scale: fp8_max must be a positive finite float32");
  auto a = static_cast<float>(amax);
  if (a < 0.0f) a = 0.0f;  // amax < epsilon -> epsilon
  if (std::isinf(a) || a == 0.0f || std::isnan(a)) return 1.0;
  float scale = static_cast<float>(fp8_max) / a;  // __fdiv_rn
  if (std::isinf(scale)) scale = std::numeric_limits<float>::max();
  if (power_of_two) scale = std::bit_cast<float>(std::bit_cast<std::uint32_t>(scale) & 0xFF800000u);
  return scale;
}

// Float8BlockScaling's tiles go through compute_scale_from_types<IType, OType>, the same
// function with value_for_inf = the input type's max: FLT_MAX for a float32 input.
double block_scale(double amax, double fp8_max, bool power_of_two) { return te_current_scale(amax, fp8_max, power_of_two); }

// floor, ceil and even follow torchao's to_mx (torchao/prototype/mx_formats/mx_tensor.py): the
// exponent is read from the float32 bits (so zero and subnormals read as -127), clamped to
// [-127, 128] with 128 the E8M0 NaN, and a non-finite amax (after even's rounding) is NaN. This
// is the OCP spec's floor(log2(amax)) - emax_elem exactly, where microxcaling's reference
// (mx/mx_ops.py _shared_exponents) uses a float32 log2 that can round up just below a power of
// two. rceil follows TE (cast kernels: float_to_e8m0(amax * Quantized_Limits<OType>::max_norm_rcp)).
int mx_scale_exponent(float amax, int emax_elem, double elem_max, mx_rounding r, int mbits_elem) {
  std::uint32_t bits = std::bit_cast<std::uint32_t>(amax) & 0x7FFFFFFFu;
  if (bits > 0x7F800000u) return mx_scale_nan;
  if (r == mx_rounding::rceil) {
    if (!positive_finite_float(elem_max)) throw std::invalid_argument("mx_scale_exponent: elem_max must be a positive finite float32");
    // static constexpr float max_norm_rcp = 1.0 / max_norm (max_norm a float): rounded once.
    const auto rcp = static_cast<float>(1.0 / static_cast<double>(static_cast<float>(elem_max)));
    return int(float_to_e8m0(std::bit_cast<float>(bits) * rcp)) - 127;
  }
  if (bits == 0x7F800000u) return mx_scale_nan;
  if (r == mx_rounding::even) {
    const int m = mbits_elem != 0 ? mbits_elem : element_mbits(emax_elem, elem_max);
    if (m < 1 || m > 22) throw std::invalid_argument("mx_scale_exponent: mbits_elem must be in [1, 22]");
    // max_abs + (1 << (23 - mbits - 1)), masked to sign and exponent: a round half up of the
    // significand to mbits bits, of which only a carry into the exponent matters.
    bits = (bits + (1u << (23 - m - 1))) & 0xFF800000u;
    if (bits == 0x7F800000u) return mx_scale_nan;
  }
  long long e = static_cast<long long>(bits >> 23) - 127;
  if (r == mx_rounding::ceil && (bits & 0x7FFFFFu) != 0) e += 1;
  const long long x = e - emax_elem;
  if (x < -127) return -127;
  if (x > 127) return mx_scale_nan;
  return static_cast<int>(x);
}

}  // namespace fpscope
