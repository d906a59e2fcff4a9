// The scaling algorithms of mixed-precision training, reproduced from their upstream sources so
// that `fpscope replay` can step a recorded run through them: loss scalers (each step either
// overflowed or not; the scaler answers with the next scale and whether the optimizer step was
// skipped), Transformer Engine's per-tensor FP8 scale recipes, and the shared scales of MX and
// 1xN / NxN block scaling. Pure logic, no I/O.
//
// Every algorithm keeps the arithmetic of its upstream: torch and Megatron hold the scale in a
// float32 tensor, DeepSpeed in a Python float (binary64), Transformer Engine computes in float32.
// Each function's comment in scaler.cpp names the upstream file and function it follows.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fpscope/format.hpp"

namespace fpscope {

// ---- Loss scalers ----------------------------------------------------------------------------

/// A loss-scaling policy, stepped once per optimizer step.
class loss_scaler {
 public:
  virtual ~loss_scaler() = default;
  virtual double scale() const = 0;  ///< the scale the current step uses
  /// Feeds the current step's outcome (its scaled gradients held an inf or NaN); returns true
  /// when the optimizer step is skipped. Throws scaler_error when the upstream implementation
  /// would stop the run (the state is then left as it was).
  virtual bool update(bool overflow) = 0;
  virtual std::string describe() const = 0;  ///< "torch (init 65536, growth 2, backoff 0.5, interval 2000)"
};

/// The upstream implementation would have stopped the run (DeepSpeed at its minimum scale).
class scaler_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A constant scale that never skips a step: an overflow is only reported (apex's static
/// LossScaler). Megatron's ConstantGradScaler and DeepSpeed's static fp16 scale would skip the
/// step, but their scale never moves either way.
class static_loss_scaler final : public loss_scaler {
 public:
  explicit static_loss_scaler(double scale);
  double scale() const override { return scale_; }
  bool update(bool) override { return false; }
  std::string describe() const override;

 private:
  double scale_;
};

/// torch.amp.GradScaler's arguments and defaults.
struct torch_scaler_options {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 2000;
};

/// torch.amp.GradScaler (_amp_update_scale_): a float32 scale, no lower bound, growth refused
/// when it would reach float32 infinity. Every overflow skips the step.
class torch_grad_scaler final : public loss_scaler {
 public:
  explicit torch_grad_scaler(const torch_scaler_options& o = {});
  double scale() const override { return scale_; }
  bool update(bool overflow) override;
  std::string describe() const override;
  int growth_tracker() const { return growth_tracker_; }  ///< consecutive unskipped steps

 private:
  torch_scaler_options o_;
  float scale_;
  int growth_tracker_ = 0;
};

/// DeepSpeed's DynamicLossScaler arguments, defaulted from the ds_config "fp16" section
/// (initial_scale_power 16, loss_scale_window 1000, hysteresis 2, consecutive_hysteresis false,
/// min_loss_scale 1; raise_error_at_min_scale is the class default). The scale factor is fixed
/// at 2 upstream.
struct deepspeed_scaler_options {
  double init_scale = 65536.0;
  int scale_window = 1000;
  double min_scale = 1.0;
  int delayed_shift = 2;  ///< "hysteresis" in ds_config
  bool consecutive_hysteresis = false;
  bool raise_error_at_min_scale = true;
};

/// deepspeed/runtime/fp16/loss_scaler.py DynamicLossScaler.update_scale, in binary64. Every
/// overflow skips the step; at min_scale a further backoff throws scaler_error.
class deepspeed_loss_scaler final : public loss_scaler {
 public:
  explicit deepspeed_loss_scaler(const deepspeed_scaler_options& o = {});
  double scale() const override { return cur_scale_; }
  bool update(bool overflow) override;
  std::string describe() const override;
  int cur_hysteresis() const { return cur_hysteresis_; }
  long long cur_iter() const { return cur_iter_; }
  long long last_overflow_iter() const { return last_overflow_iter_; }

 private:
  deepspeed_scaler_options o_;
  double cur_scale_;
  long long cur_iter_ = 0;
  long long last_overflow_iter_ = -1;
  int cur_hysteresis_;
};

/// Megatron's DynamicGradScaler arguments with the defaults of Megatron's OptimizerConfig and
/// command line (initial_loss_scale 2^32, min_loss_scale 1, loss_scale_window 1000,
/// hysteresis 2); growth 2 and backoff 0.5 are what get_megatron_optimizer passes.
struct megatron_scaler_options {
  double initial_scale = 4294967296.0;
  double min_scale = 1.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int growth_interval = 1000;
  int hysteresis = 2;
};

/// megatron/core/optimizer/grad_scaler.py DynamicGradScaler.update: float32 arithmetic, clamped
/// below at min_scale, no upper bound (growth can reach inf, and inf then stays). Every
/// overflow skips the step, also those that only spend hysteresis.
class megatron_grad_scaler final : public loss_scaler {
 public:
  explicit megatron_grad_scaler(const megatron_scaler_options& o = {});
  double scale() const override { return scale_; }
  bool update(bool found_inf) override;
  std::string describe() const override;
  int growth_tracker() const { return growth_tracker_; }
  long long hysteresis_tracker() const { return hysteresis_tracker_; }  ///< goes below 0

 private:
  megatron_scaler_options o_;
  float scale_, min_scale_, growth_factor_, backoff_factor_;
  int growth_tracker_ = 0;
  long long hysteresis_tracker_;
};

/// The loss scaler named by `spec`: "static:S", "torch", "deepspeed", "megatron", each optionally
/// followed by ":key=value,..." with the upstream argument names or short aliases:
///   torch:     init_scale|init, growth_factor|growth, backoff_factor|backoff, growth_interval|interval
///   deepspeed: init_scale|init, initial_scale_power|power, scale_window|loss_scale_window|window,
///              min_scale|min_loss_scale|min, delayed_shift|hysteresis, consecutive_hysteresis,
///              raise_error_at_min_scale
///   megatron:  initial_scale|initial_loss_scale|init, min_scale|min_loss_scale|min,
///              growth_factor|growth, backoff_factor|backoff,
///              growth_interval|loss_scale_window|interval|window, hysteresis
///   static:    S or scale=S
/// Numbers are decimal or 2^K; booleans true/false/1/0/on/off. Throws std::invalid_argument
/// with a one-line message on a bad spec, including values the upstream constructor rejects.
std::unique_ptr<loss_scaler> make_loss_scaler(std::string_view spec);

// ---- FP8 per-tensor scales (Transformer Engine) ----------------------------------------------
//
// A scale multiplies the tensor before the cast; fp8_max is 448 for E4M3, 57344 for E5M2. Under
// TE's default Format.HYBRID, forward tensors (activations, weights) are E4M3 and gradients are
// E5M2: pass the fp8_max of the tensor's role.

/// DelayedScaling's arguments and defaults (margin, amax_history_len, amax_compute_algo).
struct te_delayed_options {
  int amax_history_len = 1024;
  enum class algo { max, most_recent } amax_compute = algo::max;
  int margin = 0;
};

/// Transformer Engine DelayedScaling, one tensor's state: the amax history (float32) and the
/// scale, updated as the fused kernel of TE's default PyTorch path does (delayed_scaling.cu,
/// kernel_bulk).
class te_delayed {
 public:
  /// Throws std::invalid_argument on amax_history_len < 1 or fp8_max not positive and finite.
  te_delayed(te_delayed_options o, double fp8_max);
  double scale() const { return scale_; }  ///< scale for the current step (from past amaxes only)
  /// After the step: records this step's amax (rounded to float32) and recomputes the scale.
  /// A zero amax leaves history and scale untouched; an amax window whose result is inf, NaN or
  /// 0 keeps the previous scale (initially 1); a scale beyond float32 becomes FLT_MAX.
  void update(double amax);
  /// The last amax_history_len - 1 nonzero amaxes recorded, oldest first (zero-filled at the
  /// start); the next update's amax completes the window.
  std::vector<double> history() const;

 private:
  te_delayed_options o_;
  float scaled_max_;
  std::vector<float> hist_;  // TE's layout: [0] the current step's slot, then oldest to newest
  float scale_ = 1.0f;
};

/// Per-tensor current scaling (Float8CurrentScaling; compute_scale_from_amax): amax is raised to
/// amax_epsilon (QParams.amax_epsilon, default 0) when below it, then fp8_max / amax in float32;
/// 1 when that amax is 0, inf or NaN; FLT_MAX when the quotient overflows. power_of_two (force_pow_2_scales) then rounds the scale down to
/// a power of two by clearing its mantissa. std::invalid_argument unless fp8_max is a positive
/// finite float32.
double te_current_scale(double amax, double fp8_max, bool power_of_two, double amax_epsilon = 0);

// ---- MX and block scaling --------------------------------------------------------------------

/// How the E8M0 shared exponent of an MX block is chosen from the block's amax.
enum class mx_rounding {
  floor,  ///< OCP MX v1.0 section 6.3: floor(log2(amax)) - emax_elem (torchao FLOOR)
  ceil,   ///< ceil(log2(amax)) - emax_elem (torchao CEIL)
  rceil,  ///< NVIDIA (cuBLAS, TE): float32 amax * (1/elem_max) rounded up to a power of two
  even,   ///< amax rounded to the element's mantissa width first, then floor (torchao EVEN)
  /// torchao RCEIL (mx_tensor.py _to_mx_rceil, _f32_to_e8m0_rceil): rceil's product, but a NaN
  /// or inf amax and a product that rounds up past 2^127 give the E8M0 NaN (no saturation).
  rceil_torchao,
};

/// The value mx_scale_exponent returns for the E8M0 NaN (0xFF = this + 127).
inline constexpr int mx_scale_nan = 128;

/// The E8M0 shared exponent (unbiased) of one block whose amax is `amax` (its sign is ignored),
/// for the element format `elem` (its largest normal exponent, max finite and mantissa width);
/// the scale divides the block: X = 2^result, and the E8M0 byte is result + 127.
/// Results are clamped below at -127 (so amax 0 and float32 subnormals give -127); above 127
/// (only reachable with emax_elem < 0) they are NaN; NaN amax gives mx_scale_nan, inf amax too
/// except under rceil, where NVIDIA saturates to 127. std::invalid_argument for an unsigned
/// format or one whose mantissa is wider than 22 bits.
int mx_scale_exponent(float amax, const format& elem, mx_rounding r);

/// 1xN / NxN tile scales (DeepSeek-V3 style block scaling, as TE's Float8BlockScaling computes
/// them from a float32 input): fp8_max / tile amax with te_current_scale's rules, optionally
/// rounded down to a power of two (TE's default for this recipe).
double block_scale(double amax, double fp8_max, bool power_of_two, double amax_epsilon = 0);

}  // namespace fpscope
