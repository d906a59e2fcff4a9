#include "fpscope/scaler.hpp"

#include "fpscope/convert.hpp"
#include "fpscope/options.hpp"

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

// Numbers in descriptions: the shortest round-trip text. A float32-held value is printed as the
// double it widens to, which keeps integers exact (float32 to_chars would print 2^32 as
// "4294967300").
std::string num(double v) { return number_text(v); }

bool positive_finite_float(double v) {
  const auto f = static_cast<float>(v);
  return v > 0 && std::isfinite(f) && f > 0;
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

// transformer_engine/common/recipe/recipe_common.cuh compute_scale_from_amax with value_for_inf
// FLT_MAX (current_scaling.cu compute_scale_from_amax_kernel), epsilon from QParams.amax_epsilon.
double te_current_scale(double amax, double fp8_max, bool power_of_two, double amax_epsilon) {
  if (!positive_finite_float(fp8_max)) throw std::invalid_argument("te_current_scale: fp8_max must be a positive finite float32");
  auto a = static_cast<float>(amax);
  const auto eps = static_cast<float>(amax_epsilon);
  if (a < eps) a = eps;  // "if (amax < epsilon) amax = epsilon;" (a NaN amax stays NaN)
  if (std::isinf(a) || a == 0.0f || std::isnan(a)) return 1.0;
  float scale = static_cast<float>(fp8_max) / a;  // __fdiv_rn
  if (std::isinf(scale)) scale = std::numeric_limits<float>::max();
  if (power_of_two) scale = std::bit_cast<float>(std::bit_cast<std::uint32_t>(scale) & 0xFF800000u);
  return scale;
}

// Float8BlockScaling's tiles go through compute_scale_from_types<IType, OType>, the same
// function with value_for_inf = the input type's max: FLT_MAX for a float32 input.
double block_scale(double amax, double fp8_max, bool power_of_two, double amax_epsilon) {
  return te_current_scale(amax, fp8_max, power_of_two, amax_epsilon);
}

// floor, ceil and even follow torchao's to_mx (torchao/prototype/mx_formats/mx_tensor.py): the
// exponent is read from the float32 bits (so zero and subnormals read as -127), clamped to
// [-127, 128] with 128 the E8M0 NaN, and a non-finite amax (after even's rounding) is NaN. This
// is the OCP spec's floor(log2(amax)) - emax_elem exactly, where microxcaling's reference
// (mx/mx_ops.py _shared_exponents) uses a float32 log2 that can round up just below a power of
// two. rceil follows TE (cast kernels: float_to_e8m0(amax * Quantized_Limits<OType>::max_norm_rcp)).
int mx_scale_exponent(float amax, const format& elem, mx_rounding r) {
  if (!elem.is_signed() || elem.man_bits < 1 || elem.man_bits > 22)
    throw std::invalid_argument(std::string("mx_scale_exponent: ") + elem.name + " is not an MX element format");
  const int emax_elem = elem.emax();
  const double elem_max = decode(elem.max_finite_bits(), elem);
  std::uint32_t bits = std::bit_cast<std::uint32_t>(amax) & 0x7FFFFFFFu;
  if (bits > 0x7F800000u) return mx_scale_nan;
  if (r == mx_rounding::rceil) {
    // static constexpr float max_norm_rcp = 1.0 / max_norm (max_norm a float): rounded once.
    const auto rcp = static_cast<float>(1.0 / static_cast<double>(static_cast<float>(elem_max)));
    return int(float_to_e8m0(std::bit_cast<float>(bits) * rcp)) - 127;
  }
  if (bits == 0x7F800000u) return mx_scale_nan;
  if (r == mx_rounding::rceil_torchao) {
    // pytorch/ao torchao/prototype/mx_formats/mx_tensor.py (36027d8) _to_mx_rceil, line 185:
    // descale = max_abs * (1.0 / max_pos), a float32 tensor times a Python float (rounded to
    // float32 as TE's max_norm_rcp is); then _f32_to_e8m0_rceil, lines 111-129: the biased
    // exponent plus one when any mantissa bit is set (for a float32 subnormal, when the value
    // exceeds 2^-127, the E8M0 byte 0), with no clamp: 254 rounded up is 255, the NaN.
    const auto rcp = static_cast<float>(1.0 / static_cast<double>(static_cast<float>(elem_max)));
    const auto d = std::bit_cast<std::uint32_t>(std::bit_cast<float>(bits) * rcp);
    const std::uint32_t be = d >> 23, man = d & 0x7FFFFFu;
    const std::uint32_t biased = be + (be == 0 ? (man > 0x400000u) : (man != 0));
    return biased >= 255 ? mx_scale_nan : int(biased) - 127;
  }
  if (r == mx_rounding::even) {
    const int m = elem.man_bits;
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
