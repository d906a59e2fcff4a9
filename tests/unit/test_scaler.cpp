// The scaling algorithms of fpscope/scaler.hpp stepped through scripted sequences. Every
// expected value is derived by hand from the upstream code (quoted in scaler.cpp) in the comment
// beside it, never taken from a run of fpscope.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/scaler.hpp"

using namespace fpscope;

namespace {

constexpr bool O = true;   // the step overflowed
constexpr bool c = false;  // a clean step

struct step {
  bool overflow;
  double scale_after;
};

// Feeds `steps` in order; every overflow skips the step (all dynamic scalers do).
void run(loss_scaler& s, double initial, const std::vector<step>& steps) {
  CHECK(s.scale() == initial);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    INFO("step " << i << (steps[i].overflow ? " (overflow)" : " (clean)"));
    CHECK(s.update(steps[i].overflow) == steps[i].overflow);
    CHECK(s.scale() == steps[i].scale_after);
  }
}

void clean_steps(loss_scaler& s, int n) {
  for (int i = 0; i < n; ++i) s.update(false);
}

float bits_float(std::uint32_t b) { return std::bit_cast<float>(b); }

const double flt_max = std::numeric_limits<float>::max();
const double inf_d = std::numeric_limits<double>::infinity();
const double nan_d = std::numeric_limits<double>::quiet_NaN();

}  // namespace

TEST_CASE("scaler: torch GradScaler grows every growth_interval clean steps, backs off on overflow", "[scaler]") {
  // _amp_update_scale_: a clean step increments the tracker and grows (tracker reset) when it
  // reaches growth_interval; an overflow multiplies by backoff_factor and resets the tracker.
  auto s = make_loss_scaler("torch:init=1024,interval=3");
  run(*s, 1024, {
                    {c, 1024},  // tracker 1
                    {c, 1024},  // tracker 2
                    {c, 2048},  // tracker 3 == 3: x2, tracker 0
                    {O, 1024},  // x0.5, tracker 0
                    {c, 1024},  // tracker 1
                    {O, 512},   // x0.5: the tracker restarts, the clean step before counts for nothing
                    {c, 512},   // 1
                    {c, 512},   // 2
                    {c, 1024},  // 3: x2
                });

  torch_grad_scaler t({1.0, 2.0, 0.5, 2});
  t.update(false);
  CHECK(t.growth_tracker() == 1);
  t.update(false);
  CHECK(t.growth_tracker() == 0);
  CHECK(t.scale() == 2.0);
  t.update(false);
  t.update(true);
  CHECK(t.growth_tracker() == 0);
  CHECK(t.scale() == 1.0);
}

TEST_CASE("scaler: torch GradScaler keeps its scale in float32", "[scaler]") {
  // Growth is refused when float32(scale * growth) is inf: 2^127 * 2 = 2^128 overflows, so the
  // scale stays 2^127 (and the tracker still resets).
  torch_grad_scaler big({0x1p127, 2.0, 0.5, 1});
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(big.update(false));
    CHECK(big.scale() == 0x1p127);
    CHECK(big.growth_tracker() == 0);
  }
  CHECK(big.update(true));
  CHECK(big.scale() == 0x1p126);

  // growth 3 from 2^126: 3 * 2^126 = 1.5 * 2^127 < FLT_MAX grows; 4.5 * 2^127 does not.
  torch_grad_scaler three({0x1p126, 3.0, 0.5, 1});
  three.update(false);
  CHECK(three.scale() == 1.5 * 0x1p127);
  three.update(false);
  CHECK(three.scale() == 1.5 * 0x1p127);

  // backoff 0.1 from 1: float32(1 * 0.1) = 0x3DCCCCCD = 0.100000001490116119384765625. Then
  // 0.100000001490116... * 0.1 (double) = 0.0100000001490116...; the float32 neighbours are
  // 0x3C23D70A = 0.00999999977648258209 and 0x3C23D70B = 0.01000000070780515671, midpoint
  // 0.0100000002421438694: the product is below it, so 0x3C23D70A.
  torch_grad_scaler tenth({1.0, 2.0, 0.1, 1000});
  tenth.update(true);
  CHECK(tenth.scale() == double(bits_float(0x3DCCCCCDu)));
  tenth.update(true);
  CHECK(tenth.scale() == double(bits_float(0x3C23D70Au)));

  // No lower bound: 149 halvings from 1 reach 2^-149, float32's smallest subnormal; the 150th
  // gives 2^-150, exactly half of it, a tie that rounds to the even neighbour, 0.
  torch_grad_scaler down({1.0, 2.0, 0.5, 2000});
  for (int i = 0; i < 149; ++i) down.update(true);
  CHECK(down.scale() == 0x1p-149);
  down.update(true);
  CHECK(down.scale() == 0.0);
}

TEST_CASE("scaler: torch defaults grow after 2000 clean steps", "[scaler]") {
  auto s = make_loss_scaler("torch");
  CHECK(s->scale() == 65536);  // init_scale 2.**16
  clean_steps(*s, 1999);
  CHECK(s->scale() == 65536);
  clean_steps(*s, 1);
  CHECK(s->scale() == 131072);
}

TEST_CASE("scaler: DeepSpeed DynamicLossScaler hysteresis and windows", "[scaler]") {
  // update_scale with scale_window 3, delayed_shift 2. State (cur_iter, last_overflow_iter,
  // cur_hysteresis) starts at (0, -1, 2). A clean step grows when
  // stable_interval = cur_iter - last_overflow_iter - 1 is a positive multiple of 3.
  auto s = make_loss_scaler("deepspeed:init=1024,window=3");
  run(*s, 1024, {
                    {c, 1024},  // iter 0: stable 0
                    {c, 1024},  // iter 1: stable 1
                    {c, 1024},  // iter 2: stable 2
                    {c, 2048},  // iter 3: stable 3: x2, hysteresis refilled to 2 (4 clean steps)
                    {O, 2048},  // iter 4: hysteresis 2 != 1: only 2 -> 1; last_overflow 4
                    {O, 1024},  // iter 5: hysteresis 1: halve; last_overflow 5
                    {O, 512},   // iter 6: still 1 (not decremented further): halve
                    {c, 512},   // iter 7: stable 0
                    {c, 512},   // iter 8: stable 1
                    {c, 512},   // iter 9: stable 2
                    {c, 1024},  // iter 10: stable 3: x2, hysteresis back to 2
                    {O, 1024},  // iter 11: 2 -> 1, no change
                    {c, 1024},  // iter 12: stable 0
                    {c, 1024},  // iter 13
                    {c, 1024},  // iter 14
                    {c, 2048},  // iter 15: stable 3
                    {c, 2048},  // iter 16: stable 4
                    {c, 2048},  // iter 17: stable 5
                    {c, 4096},  // iter 18: stable 6, a multiple of 3: the next growth 3 steps later
                });

  // Without consecutive_hysteresis a clean step does not refill the hysteresis: the second
  // overflow halves. With it, every clean step refills it, so isolated overflows never halve.
  deepspeed_loss_scaler plain({1024, 3, 1, 2, false, true});
  run(plain, 1024, {{O, 1024}, {c, 1024}, {O, 512}, {c, 512}, {O, 256}});
  CHECK(plain.cur_hysteresis() == 1);
  CHECK(plain.cur_iter() == 5);
  CHECK(plain.last_overflow_iter() == 4);
  deepspeed_loss_scaler consecutive({1024, 3, 1, 2, true, true});
  run(consecutive, 1024, {{O, 1024}, {c, 1024}, {O, 1024}, {c, 1024}, {O, 1024}, {O, 512}});
}

TEST_CASE("scaler: DeepSpeed stops the run at its minimum scale", "[scaler]") {
  // delayed_shift 1: every overflow halves, max(cur / 2, min_scale); an overflow at exactly
  // min_scale raises "Current loss scale already at minimum ...".
  deepspeed_loss_scaler s({4, 1000, 1, 1, false, true});
  run(s, 4, {{O, 2}, {O, 1}});
  CHECK_THROWS_AS(s.update(true), scaler_error);
  CHECK(s.scale() == 1);       // left as it was: the exception comes before any change
  CHECK(s.cur_iter() == 2);
  CHECK(s.update(false) == false);  // a clean step still works afterwards

  // The clamp: 3 -> 1.5 -> max(0.75, 1) = 1 -> error.
  auto clamp = make_loss_scaler("deepspeed:init=3,hysteresis=1");
  run(*clamp, 3, {{O, 1.5}, {O, 1}});
  CHECK_THROWS_AS(clamp->update(true), scaler_error);

  // With hysteresis 2, the first overflow at the minimum only spends hysteresis.
  auto hyst = make_loss_scaler("deepspeed:init=1,min=1");
  CHECK(hyst->update(true));
  CHECK(hyst->scale() == 1);
  CHECK_THROWS_AS(hyst->update(true), scaler_error);

  // raise_error_at_min_scale=false: the scale stays at max(1 / 2, 1) = 1.
  auto lenient = make_loss_scaler("deepspeed:init=1,hysteresis=1,raise_error_at_min_scale=false");
  for (int i = 0; i < 3; ++i) {
    CHECK(lenient->update(true));
    CHECK(lenient->scale() == 1);
  }
}

TEST_CASE("scaler: DeepSpeed defaults are the ds_config fp16 defaults", "[scaler]") {
  // initial_scale_power 16, loss_scale_window 1000: from the start (last_overflow_iter -1) the
  // first growth is at cur_iter 1000 (stable 1000), i.e. the 1001st clean update; the next at
  // cur_iter 2000.
  auto s = make_loss_scaler("deepspeed");
  CHECK(s->scale() == 65536);
  clean_steps(*s, 1000);
  CHECK(s->scale() == 65536);
  clean_steps(*s, 1);
  CHECK(s->scale() == 131072);
  clean_steps(*s, 999);
  CHECK(s->scale() == 131072);
  clean_steps(*s, 1);
  CHECK(s->scale() == 262144);
}

TEST_CASE("scaler: Megatron DynamicGradScaler hysteresis", "[scaler]") {
  // update(): an overflow zeroes the growth tracker and decrements the hysteresis tracker,
  // backing off once it is <= 0; growth_interval clean steps in a row grow and refill it.
  auto s = make_loss_scaler("megatron:init=1024,interval=3");
  run(*s, 1024, {
                    {c, 1024},  // growth 1
                    {c, 1024},  // 2
                    {c, 2048},  // 3 == interval: x2, growth 0, hysteresis 2
                    {O, 2048},  // hysteresis 1
                    {O, 1024},  // hysteresis 0: backoff
                    {O, 512},   // -1: backoff
                    {c, 512},   // growth 1
                    {c, 512},   // growth 2
                    {O, 256},   // growth 0, hysteresis -2 (clean steps do not refill it): backoff
                    {c, 256},   // 1
                    {c, 256},   // 2
                    {c, 512},   // 3: x2, hysteresis 2
                    {O, 512},   // hysteresis 1
                    {O, 256},   // 0
                });
  megatron_grad_scaler m({1024, 1, 2, 0.5, 3, 2});
  m.update(true);
  m.update(true);
  m.update(true);
  CHECK(m.hysteresis_tracker() == -1);
  m.update(false);
  CHECK(m.growth_tracker() == 1);

  // min_scale clamps without an error: 4 -> 2 -> max(1, 1.5) = 1.5 -> 1.5.
  auto clamp = make_loss_scaler("megatron:init=4,min=1.5,hysteresis=1");
  run(*clamp, 4, {{O, 2}, {O, 1.5}, {O, 1.5}});
}

TEST_CASE("scaler: Megatron keeps float32 tensors and no upper bound", "[scaler]") {
  // scale * growth_factor is not checked: 2^127 * 2 is inf in float32, and inf * 0.5 = inf
  // stays above min_scale.
  megatron_grad_scaler up({0x1p127, 1, 2, 0.5, 1, 2});
  up.update(false);
  CHECK(up.scale() == inf_d);
  up.update(true);
  up.update(true);
  CHECK(up.scale() == inf_d);

  // backoff_factor is a float32 tensor: 0.1f = 0.100000001490116119. From 1: 0.1f; then
  // 0.1f * 0.1f = 0.0100000002980232 exactly-ish, above the midpoint 0.0100000002421438694
  // of 0x3C23D70A and 0x3C23D70B: 0x3C23D70B (torch, multiplying by the double 0.1, gets
  // 0x3C23D70A).
  megatron_grad_scaler tenth({1, 0x1p-20, 2, 0.1, 1000, 1});
  tenth.update(true);
  CHECK(tenth.scale() == double(bits_float(0x3DCCCCCDu)));
  tenth.update(true);
  CHECK(tenth.scale() == double(bits_float(0x3C23D70Bu)));
}

TEST_CASE("scaler: Megatron defaults", "[scaler]") {
  // initial_loss_scale 2^32, loss_scale_window 1000: growth after exactly 1000 clean steps.
  auto s = make_loss_scaler("megatron");
  CHECK(s->scale() == 0x1p32);
  clean_steps(*s, 999);
  CHECK(s->scale() == 0x1p32);
  clean_steps(*s, 1);
  CHECK(s->scale() == 0x1p33);
}

TEST_CASE("scaler: a static scale never moves and never skips", "[scaler]") {
  auto s = make_loss_scaler("static:1024");
  for (bool o : {true, false, true, true}) {
    CHECK_FALSE(s->update(o));
    CHECK(s->scale() == 1024);
  }
  CHECK(make_loss_scaler("static:2^-3")->scale() == 0.125);
  CHECK(make_loss_scaler("static:scale=8")->scale() == 8);
}

TEST_CASE("scaler: specs and descriptions", "[scaler]") {
  CHECK(make_loss_scaler("torch")->describe() == "torch (init 65536, growth 2, backoff 0.5, interval 2000)");
  CHECK(make_loss_scaler("torch:")->describe() == "torch (init 65536, growth 2, backoff 0.5, interval 2000)");
  CHECK(make_loss_scaler("torch:init=1024,growth=2,backoff=0.5,interval=100")->describe() ==
        "torch (init 1024, growth 2, backoff 0.5, interval 100)");
  CHECK(make_loss_scaler("torch:init_scale=2^10,growth_factor=4,backoff_factor=0.25,growth_interval=7")->describe() ==
        "torch (init 1024, growth 4, backoff 0.25, interval 7)");
  CHECK(make_loss_scaler("deepspeed")->describe() == "deepspeed (init 65536, window 1000, min 1, hysteresis 2)");
  const auto ds = make_loss_scaler(
      "deepspeed:initial_scale_power=8,loss_scale_window=50,min_loss_scale=0.25,hysteresis=3,"
      "consecutive_hysteresis=true,raise_error_at_min_scale=false");
  CHECK(ds->scale() == 256);
  CHECK(ds->describe() == "deepspeed (init 256, window 50, min 0.25, hysteresis 3, consecutive_hysteresis, no error at min scale)");
  CHECK(make_loss_scaler("megatron")->describe() ==
        "megatron (init 4294967296, min 1, growth 2, backoff 0.5, interval 1000, hysteresis 2)");
  CHECK(make_loss_scaler("megatron:initial_loss_scale=2^16,min_loss_scale=2,loss_scale_window=10,hysteresis=1")->describe() ==
        "megatron (init 65536, min 2, growth 2, backoff 0.5, interval 10, hysteresis 1)");
  CHECK(make_loss_scaler("static:1024")->describe() == "static (scale 1024)");
}

TEST_CASE("scaler: bad specs are rejected with one-line messages", "[scaler]") {
  for (const char* bad : {"", "foo", "torch2", "static", "static:", "static:abc", "static:0", "static:-1", "static:inf",
                          "static:1,2", "torch:bogus=1", "torch:init", "torch:init=", "torch:init=1,init=2",
                          "torch:init=1,init_scale=2", "torch:growth=1", "torch:backoff=1", "torch:backoff=0",
                          "torch:interval=0", "torch:interval=1.5", "torch:init=1e39", "torch:init=2^x",
                          "torch:init=nan", "deepspeed:hysteresis=0", "deepspeed:window=-3", "deepspeed:min=0",
                          "deepspeed:init=1,initial_scale_power=3", "deepspeed:power=1.5",
                          "deepspeed:consecutive_hysteresis=maybe", "megatron:min=2,init=1", "megatron:growth=0.5",
                          "megatron:backoff=1.5", "megatron:hysteresis=0", "megatron:interval=0",
                          "megatron:init=1\n2"}) {
    INFO("spec '" << bad << "'");
    try {
      make_loss_scaler(bad);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      const std::string m = e.what();
      CHECK_FALSE(m.empty());
      CHECK(m.find('\n') == std::string::npos);
    }
  }
  CHECK_THROWS_WITH(make_loss_scaler("torch:bogus=1"),
                    "torch: unknown key 'bogus' (known: init_scale|init, growth_factor|growth, "
                    "backoff_factor|backoff, growth_interval|interval)");
  CHECK_THROWS_WITH(make_loss_scaler("adam"), "unknown loss scaler 'adam' (known: static:S, torch, deepspeed, megatron)");
}

TEST_CASE("scaler: TE delayed scaling over an amax history", "[scaler]") {
  // E4M3, amax_history_len 3. Each update writes the amax into slot 0, rolls left (slot i takes
  // slot i + 1, the last takes the new amax, slot 0 is zeroed), so "max" sees the last 3
  // amaxes; scale = 448 / amax in float32.
  te_delayed mx({3, te_delayed_options::algo::max, 0}, 448);
  te_delayed mr({3, te_delayed_options::algo::most_recent, 0}, 448);
  CHECK(mx.scale() == 1);  // before any amax: the initial scale
  CHECK(mr.scale() == 1);
  struct row {
    double amax, max_scale, recent_scale;
  };
  for (const row& r : {
           row{2, 224, 224},  // windows {2} | 2
           row{4, 112, 112},  // {2, 4} | 4
           row{1, 112, 448},  // {2, 4, 1} | 1
           row{1, 112, 448},  // {4, 1, 1}
           row{1, 448, 448},  // {1, 1, 1}: the 4 left the window
       }) {
    INFO("amax " << r.amax);
    mx.update(r.amax);
    mr.update(r.amax);
    CHECK(mx.scale() == r.max_scale);
    CHECK(mr.scale() == r.recent_scale);
  }
  CHECK(mx.history() == std::vector<double>{1, 1});

  // amax_history_len 1: only the step's own amax counts.
  te_delayed one({1, te_delayed_options::algo::max, 0}, 448);
  one.update(2);
  CHECK(one.scale() == 224);
  one.update(4);
  CHECK(one.scale() == 112);
  one.update(1);
  CHECK(one.scale() == 448);
  CHECK(one.history().empty());

  // margin 1: scaled_max = 448 * 2^-1 = 224. E5M2 (HYBRID gradients): 57344 / 56 = 1024.
  te_delayed margin({1, te_delayed_options::algo::max, 1}, 448);
  margin.update(2);
  CHECK(margin.scale() == 112);
  margin.update(3);
  CHECK(margin.scale() == double(224.0f / 3.0f));  // a float32 quotient
  te_delayed e5m2({1, te_delayed_options::algo::max, 0}, 57344);
  e5m2.update(56);
  CHECK(e5m2.scale() == 1024);

  CHECK_THROWS_AS((te_delayed({0, te_delayed_options::algo::max, 0}, 448)), std::invalid_argument);
  CHECK_THROWS_AS((te_delayed({}, 0)), std::invalid_argument);
}

TEST_CASE("scaler: TE delayed scaling keeps its scale on zero, inf and NaN amaxes", "[scaler]") {
  // Zero: kernel_bulk skips the roll when the step's amax is 0, and the amax it uses stays 0,
  // so the scale is kept and the zero never enters the window: after 2, 0, 0 the window is
  // still {0, 0, 2} (history {0, 2}); then 1 sees {0, 2, 1} -> 224, 1 sees {2, 1, 1} -> 224,
  // 1 sees {1, 1, 1} -> 448.
  te_delayed z({3, te_delayed_options::algo::max, 0}, 448);
  for (const auto& [amax, scale] : std::vector<std::pair<double, double>>{{2, 224}, {0, 224}, {0, 224}}) {
    z.update(amax);
    CHECK(z.scale() == scale);
  }
  CHECK(z.history() == std::vector<double>{0, 2});
  for (const auto& [amax, scale] : std::vector<std::pair<double, double>>{{1, 224}, {1, 224}, {1, 448}}) {
    z.update(amax);
    CHECK(z.scale() == scale);
  }

  // inf under max: it stays in the window for 3 updates, each keeping the scale.
  te_delayed i({3, te_delayed_options::algo::max, 0}, 448);
  for (const auto& [amax, scale] :
       std::vector<std::pair<double, double>>{{2, 224}, {inf_d, 224}, {1, 224}, {1, 224}, {1, 448}}) {
    INFO("amax " << amax);
    i.update(amax);
    CHECK(i.scale() == scale);
  }
  // inf under most_recent: kept for that step only.
  te_delayed ir({3, te_delayed_options::algo::most_recent, 0}, 448);
  ir.update(2);
  ir.update(inf_d);
  CHECK(ir.scale() == 224);
  ir.update(1);
  CHECK(ir.scale() == 448);

  // NaN under max: fmaxf drops it. Windows (length 2) {4}: 112; {4, 2}: 112; {2, NaN}: fmaxf
  // gives 2 -> 224 (a NaN-propagating max, like torch.max in TE's unfused Python path, would
  // keep 112); {NaN, 1}: 1 -> 448.
  te_delayed n({2, te_delayed_options::algo::max, 0}, 448);
  for (const auto& [amax, scale] :
       std::vector<std::pair<double, double>>{{4, 112}, {2, 112}, {nan_d, 224}, {1, 448}}) {
    INFO("amax " << amax);
    n.update(amax);
    CHECK(n.scale() == scale);
  }
  te_delayed nr({2, te_delayed_options::algo::most_recent, 0}, 448);
  nr.update(4);
  nr.update(nan_d);
  CHECK(nr.scale() == 112);

  // A tiny amax: 448 / 2^-119 = 1.75 * 2^127 is finite; 448 / 2^-120 = 1.75 * 2^128 is inf in
  // float32 and becomes FLT_MAX; a later zero keeps it.
  te_delayed t({1, te_delayed_options::algo::max, 0}, 448);
  t.update(0x1p-119);
  CHECK(t.scale() == 1.75 * 0x1p127);
  t.update(0x1p-120);
  CHECK(t.scale() == flt_max);
  t.update(0);
  CHECK(t.scale() == flt_max);
}

TEST_CASE("scaler: TE current scaling and block scales", "[scaler]") {
  // compute_scale_from_amax: 448 / amax in float32; power of two by clearing the mantissa.
  CHECK(te_current_scale(2, 448, false) == 224);
  CHECK(te_current_scale(2, 448, true) == 128);  // 224 = 1.75 * 2^7
  CHECK(te_current_scale(3, 448, false) == double(448.0f / 3.0f));
  CHECK(te_current_scale(3, 448, true) == 128);   // 149.33
  CHECK(te_current_scale(7, 448, true) == 64);    // exactly 2^6
  CHECK(te_current_scale(448, 448, true) == 1);
  CHECK(te_current_scale(449, 448, true) == 0.5);  // 0.9978 rounds down
  CHECK(te_current_scale(447, 448, true) == 1);    // 1.0022
  CHECK(te_current_scale(229376, 57344, false) == 0.25);
  // amax 0, negative (raised to epsilon 0), inf, NaN, or beyond float32: scale 1.
  for (double a : {0.0, -5.0, inf_d, nan_d, 1e300}) {
    INFO("amax " << a);
    CHECK(te_current_scale(a, 448, false) == 1);
    CHECK(te_current_scale(a, 448, true) == 1);
  }
  // 448 / 2^-149 overflows float32: FLT_MAX, whose power of two is 2^127.
  CHECK(te_current_scale(0x1p-149, 448, false) == flt_max);
  CHECK(te_current_scale(0x1p-149, 448, true) == 0x1p127);

  // Float8BlockScaling tiles, same rules: 448 / 1 = 448 -> 256; 448 / 0.75 = 597.33 -> 512.
  CHECK(block_scale(1, 448, false) == 448);
  CHECK(block_scale(1, 448, true) == 256);
  CHECK(block_scale(0.75, 448, true) == 512);
  CHECK(block_scale(0, 448, true) == 1);
  CHECK(block_scale(inf_d, 448, false) == 1);
  CHECK(block_scale(0x1p-149, 448, true) == 0x1p127);
  CHECK(block_scale(0x1p-149, 448, false) == flt_max);
  CHECK(block_scale(57344, 57344, true) == 1);
}

TEST_CASE("scaler: MX shared exponents of E4M3 blocks under each rounding", "[scaler]") {
  // E4M3: emax_elem 8, max 448 = 1.75 * 2^8, 3 mantissa bits.
  //   floor: floor(log2 amax) - 8     ceil: ceil(log2 amax) - 8
  //   even:  round the significand to 3 bits (add 2^-4, drop the fraction), then floor
  //   rceil: float32 amax * float32(1/448) rounded up to a power of two. float32(1/448) =
  //          2^-9 * float32(8/7); 8/7 = 1.001001001...b rounds up at bit 23 to 8/7 * (1 + 0.75 *
  //          2^-24), so 448 * it = 1 + 0.75 * 2^-24 rounds to exactly 1.
  struct row {
    float amax;
    int floor, ceil, even, rceil;
  };
  const float below256 = std::nextafter(256.0f, 0.0f);  // (2 - 2^-23) * 2^7
  const float above256 = std::nextafter(256.0f, 512.0f);
  for (const row& r : {
           row{256, 0, 0, 0, 0},        // 2^8; 256/448 = 0.571 rounds up to 2^0
           row{448, 0, 1, 0, 0},        // 1.11b * 2^8: no carry at 3 bits; 448 * rcp == 1
           row{480, 0, 1, 0, 1},        // 1.111b: still 3 bits; 480/448 > 1
           row{496, 0, 1, 1, 1},        // 1.1111b + 0.0001b carries: 2^9
           row{512, 1, 1, 1, 1},        // 2^9
           row{below256, -1, 0, 0, 0},  // 23 ones + 2^-4 carries; 0.571 -> 2^0
           row{above256, 0, 1, 0, 0},   // a mantissa bit set; 0.571 -> 2^0
           row{1, -8, -8, -8, -8},      // 1 * rcp = 1.14 * 2^-9 -> 2^-8
           row{3, -7, -6, -7, -7},      // 1.1b * 2^1; 3/448 = 2^-7.2 -> 2^-7
           row{-448, 0, 1, 0, 0},       // the sign is ignored
           // floor(log2) - 8 is below -127: clamped. rceil: 2^-126 * rcp <= 2^-127 -> byte 0.
           row{0x1p-126f, -127, -127, -127, -127},
           row{0x1p-140f, -127, -127, -127, -127},  // a float32 subnormal
           row{0.0f, -127, -127, -127, -127},
           // FLT_MAX = (2 - 2^-23) * 2^127: floor 119, ceil 120; even carries to inf: NaN;
           // FLT_MAX * rcp = 1.14 * 2^119 -> 2^120.
           row{std::numeric_limits<float>::max(), 119, 120, mx_scale_nan, 120},
           // inf: the E8M0 NaN (torchao, the spec's NaN scale), but NVIDIA's satfinite gives 127.
           row{std::numeric_limits<float>::infinity(), mx_scale_nan, mx_scale_nan, mx_scale_nan, 127},
           row{std::numeric_limits<float>::quiet_NaN(), mx_scale_nan, mx_scale_nan, mx_scale_nan, mx_scale_nan},
       }) {
    INFO("amax " << r.amax);
    const format e4m3 = builtin(format_id::e4m3);  // emax 8, max 448, 3 mantissa bits
    CHECK(mx_scale_exponent(r.amax, e4m3, mx_rounding::floor) == r.floor);
    CHECK(mx_scale_exponent(r.amax, e4m3, mx_rounding::ceil) == r.ceil);
    CHECK(mx_scale_exponent(r.amax, e4m3, mx_rounding::even) == r.even);
    CHECK(mx_scale_exponent(r.amax, e4m3, mx_rounding::rceil) == r.rceil);
  }
  CHECK(mx_scale_nan + 127 == 0xFF);
}

TEST_CASE("scaler: MX shared exponents of other element formats and the E8M0 bounds", "[scaler]") {
  struct row {
    float amax;
    int floor, ceil, even, rceil;
  };
  // E5M2: emax 15, max 57344 = 1.75 * 2^15, 2 mantissa bits; 1/57344 = 2^-16 * 8/7 rounds like
  // 1/448, so 57344 * rcp == 1.
  for (const row& r : {row{57344, 0, 1, 0, 0}, row{61440, 0, 1, 1, 1} /* 1.111b: carries at 2 bits */,
                       row{32768, 0, 0, 0, 0}}) {
    INFO("e5m2 amax " << r.amax);
    const format e5m2 = builtin(format_id::e5m2);
    CHECK(mx_scale_exponent(r.amax, e5m2, mx_rounding::floor) == r.floor);
    CHECK(mx_scale_exponent(r.amax, e5m2, mx_rounding::ceil) == r.ceil);
    CHECK(mx_scale_exponent(r.amax, e5m2, mx_rounding::even) == r.even);
    CHECK(mx_scale_exponent(r.amax, e5m2, mx_rounding::rceil) == r.rceil);
  }
  // E2M1: emax 2, max 6 = 1.5 * 2^2, 1 mantissa bit. float32(1/6) = 2^-3 * 4/3 * (1 + 2^-25),
  // so 6 * rcp = 1 + 2^-25 rounds to 1.
  for (const row& r : {row{6, 0, 1, 0, 0}, row{7, 0, 1, 1, 1} /* 1.11b + 0.01b carries */,
                       row{5, 0, 1, 0, 0} /* 1.01b + 0.01b = 1.10b; 5/6 < 1 */, row{0.5f, -3, -3, -3, -3}}) {
    INFO("e2m1 amax " << r.amax);
    const format e2m1 = builtin(format_id::e2m1);
    CHECK(mx_scale_exponent(r.amax, e2m1, mx_rounding::floor) == r.floor);
    CHECK(mx_scale_exponent(r.amax, e2m1, mx_rounding::ceil) == r.ceil);
    CHECK(mx_scale_exponent(r.amax, e2m1, mx_rounding::even) == r.even);
    CHECK(mx_scale_exponent(r.amax, e2m1, mx_rounding::rceil) == r.rceil);
  }
  // Any element format, its facts from the format itself (no table of MX element formats): a
  // finite 6-bit format of emax 0, max 1.875 and 3 mantissa bits; with 3, 1.1111b carries.
  const format t{"t", 6, 2, 3, 3, special::finite, true};
  REQUIRE(t.emax() == 0);
  CHECK(mx_scale_exponent(1.9375f, t, mx_rounding::even) == 1);
  CHECK(mx_scale_exponent(1.9375f, t, mx_rounding::floor) == 0);
  // fp16 is an element format too (replay -P mx -f fp16): emax 15, 10 mantissa bits.
  CHECK(mx_scale_exponent(65504.0f, builtin(format_id::fp16), mx_rounding::floor) == 0);
  CHECK(mx_scale_exponent(65504.0f, builtin(format_id::fp16), mx_rounding::even) == 0);
  // Mantissas wider than float32's 22 usable bits and unsigned formats are refused.
  const format wide{"wide", 32, 8, 23, 127, special::ieee, true};
  CHECK_THROWS_AS(mx_scale_exponent(1.0f, wide, mx_rounding::even), std::invalid_argument);
  CHECK_THROWS_AS(mx_scale_exponent(1.0f, builtin(format_id::e8m0), mx_rounding::floor), std::invalid_argument);
}

TEST_CASE("scaler: MX exponents above the E8M0 range", "[scaler]") {
  // A 4-bit "fn" format (2 exponent bits, 1 mantissa bit, bias 4): its largest finite code is
  // 0.11.0 = 2^-1, so emax -1 and max 0.5.
  const format tiny{"tiny", 4, 2, 1, 4, special::fn, true};
  REQUIRE(tiny.emax() == -1);
  // floor: 2^126 -> 127 fits, 2^127 -> 128 is past E8M0's 127: NaN.
  CHECK(mx_scale_exponent(0x1p126f, tiny, mx_rounding::floor) == 127);
  CHECK(mx_scale_exponent(0x1p127f, tiny, mx_rounding::floor) == mx_scale_nan);
  // rceil with max 0.5 (rcp 2): 1.5 * 2^126 * 2 = 1.5 * 2^127 rounds up past 2^127, and
  // satfinite keeps 2^127.
  CHECK(mx_scale_exponent(1.5f * 0x1p126f, tiny, mx_rounding::rceil) == 127);
  CHECK(mx_scale_exponent(0x1p126f, tiny, mx_rounding::rceil) == 127);  // exactly 2^127
  CHECK(mx_scale_exponent(0x1p125f, tiny, mx_rounding::rceil) == 126);
}
