// The replay engine of the library (fpscope/replay.hpp) on traces written by trace_writer: the
// contained worker answers what the engine gives in process, byte for byte; the answer survives
// its trip (and a truncated one is an error, not a crash); histogram-only steps count what the
// values count where that is exact; dropping the per-tensor results changes nothing else; a file
// that crashes libhdf5 is an error of the worker, and a bad option is refused before it starts.
// The recipes' own arithmetic is tested in tests/unit/test_scaler.cpp and, end to end against
// ml_dtypes and Transformer Engine's rules, in tests/cli/test_replay.py.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <random>
#include <unistd.h>

#include "fpscope/contain.hpp"
#include "fpscope/replay.hpp"
#include "fpscope/report_json.hpp"
#include "fpscope/trace.hpp"
#include "scratch.hpp"

namespace fs = std::filesystem;
using namespace fpscope;

namespace {

// A small run: two tensors, 12 steps whose gradients grow and shrink, an overflowing spike at
// step 5; values and histograms recorded on every step, or histograms only.
std::string run_trace(const std::string& name, bool raw) {
  const auto path = scratch(name).string();
  trace_writer w(path, "test_replay.cpp", "scripted", true);
  std::mt19937 g(3);
  std::normal_distribution<float> n(0, 1);
  for (int s = 0; s < 12; ++s) {
    w.begin_step(s, 1.0, 0.1);
    for (const auto& [t, size] : {std::pair{"layer.weight", 3000}, std::pair{"layer.bias", 40}}) {
      std::vector<float> x(static_cast<std::size_t>(size));
      for (auto& v : x) v = n(g) * std::exp2(-float(s % 6) * 3.0f - 12.0f);
      if (s == 5) x[3] = 4.0f;  // 4 * 2^16 overflows fp16
      w.add(t, x, {std::uint64_t(size)}, raw, true);
    }
    w.end_step();
  }
  return path;
}

replay_options opts(const std::string& policy) {
  replay_options o;
  o.policy = policy;
  return o;
}

}  // namespace

TEST_CASE("replay: the contained worker answers what the engine gives in process", "[replay]") {
  const auto path = run_trace("run.h5", true);
  const trace_reader r(path);
  for (const char* policy : {"torch:interval=3", "deepspeed:window=2", "megatron:init=2^16,window=2", "static:2^10",
                             "te-delayed:amax_history_len=4", "te-current:pow2", "mx:scaling_mode=rceil", "block"}) {
    INFO(policy);
    const replay_result here = replay(r, opts(policy));
    REQUIRE(here.steps.size() == 12);
    CHECK(serialize(replay_file(path, opts(policy))) == serialize(here));
    // The trip there and back changes nothing.
    CHECK(serialize(deserialize_replay(serialize(here))) == serialize(here));
  }
  // The spike skips the loss scaler's step 5 and only that one.
  const replay_result t = replay(r, opts("torch"));
  CHECK(t.summary.skipped == std::vector<std::int64_t>{5});
  CHECK(t.summary.skip_causes.at("layer.weight") == 1);
  CHECK(t.steps[5].skipped);
  CHECK(t.steps[6].scale == 32768);
}

TEST_CASE("replay: a truncated answer is an error, never a crash", "[replay]") {
  const auto path = run_trace("run.h5", true);
  const trace_reader r(path);
  const std::string bytes = serialize(replay(r, opts("te-delayed")));
  REQUIRE(bytes.size() > 1000);
  for (std::size_t cut = 0; cut < bytes.size(); cut += 1 + cut / 16)
    CHECK_THROWS_AS(deserialize_replay(std::string_view(bytes).substr(0, cut)), trace_error);
  CHECK_THROWS_AS(deserialize_replay(bytes + "x"), trace_error);
}

TEST_CASE("replay: histogram-only steps count what the values count at power-of-two scales", "[replay]") {
  const auto values = run_trace("values.h5", true), hists = run_trace("hists.h5", false);
  const trace_reader rv(values), rh(hists);
  for (const char* policy : {"torch:interval=2", "static:2^20", "te-current:pow2", "deepspeed:window=2"}) {
    INFO(policy);
    const replay_result a = replay(rv, opts(policy)), b = replay(rh, opts(policy));
    REQUIRE(a.steps.size() == b.steps.size());
    for (std::size_t i = 0; i < a.steps.size(); ++i) {
      CHECK(a.steps[i].total == b.steps[i].total);
      CHECK(a.steps[i].scale == b.steps[i].scale);
    }
    CHECK(b.summary.exact);
  }
  // Not a power of two: recorded buckets may straddle a boundary, and then say so.
  const replay_result c = replay(rh, opts("te-current"));
  const replay_result d = replay(rv, opts("te-current"));
  bool same = true;
  for (std::size_t i = 0; i < c.steps.size(); ++i) same = same && c.steps[i].total == d.steps[i].total;
  CHECK((same || !c.summary.exact));
  // Block recipes need values: every step left out is an error naming the file.
  CHECK_THROWS_AS(replay(rh, opts("mx")), trace_error);
}

TEST_CASE("replay: dropping the per-tensor results keeps the totals and the summary", "[replay]") {
  const auto path = run_trace("run.h5", true);
  const trace_reader r(path);
  replay_options o = opts("torch:interval=2");
  const replay_result full = replay(r, o);
  o.keep_tensors = false;
  std::size_t calls = 0, last = 0;
  o.progress = [&](std::size_t done, std::size_t total) {
    CHECK(done > last);
    CHECK(total == 12);
    last = done, ++calls;
  };
  const replay_result lean = replay(r, o);
  CHECK(calls == 12);
  REQUIRE(lean.steps.size() == full.steps.size());
  for (std::size_t i = 0; i < lean.steps.size(); ++i) {
    CHECK(lean.steps[i].tensors.empty());
    CHECK(lean.steps[i].total == full.steps[i].total);
  }
  replay_result stripped = full;
  for (auto& s : stripped.steps) s.tensors.clear();
  CHECK(serialize(lean) == serialize(stripped));  // the summary too
}

TEST_CASE("replay: steps, options and hostile files", "[replay]") {
  const auto path = run_trace("run.h5", true);
  const trace_reader r(path);
  replay_options o = opts("torch");
  o.steps = parse_steps("3:5");
  const replay_result part = replay(r, o);
  REQUIRE(part.steps.size() == 3);
  CHECK(part.steps.front().step == 3);
  // Bad options are refused before any worker starts, as option_error.
  for (const char* bad : {"adam", "torch:init=0", "te-current:pow2,pow2"})
    CHECK_THROWS_AS(replay_file(path, opts(bad)), option_error);
  replay_options sr = opts("torch");
  sr.cast.rounding = "sr";
  CHECK_THROWS_AS(replay_file(path, sr), option_error);
  replay_options threads = opts("torch");
  threads.threads = 100000;
  CHECK_THROWS_AS(replay_file(path, threads), option_error);
  // A file that crashes libhdf5 takes down the worker, not the caller.
  const std::string crash = std::string(FPSCOPE_TRACE_CORPUS) + "/hdf5-crash-vlen-string.h5";
  CHECK_THROWS_AS(replay_file(crash, opts("torch")), contained_error);
  // A missing file is the worker's trace_error, as one line.
  try {
    replay_file(scratch("missing.h5").string(), opts("torch"));
    FAIL("no error");
  } catch (const contained_error& e) {
    CHECK(std::string(e.what()).find("missing.h5") != std::string::npos);
  }
}

TEST_CASE("replay: the JSON of a result (docs/json.md)", "[replay]") {
  const auto path = run_trace("run.h5", true);
  const trace_reader r(path);
  const auto j = replay_json(replay(r, opts("torch")));
  REQUIRE(j["steps"].size() == 12);
  const auto& s5 = j["steps"][5];
  CHECK(s5["skipped"] == true);
  for (const char* k : {"total", "zero", "underflow", "subnormal", "normal", "overflow", "nonfinite", "fraction_of_all",
                        "fraction_of_nonzero_finite", "tensors"})
    CHECK(s5.contains(k));
  CHECK(s5["tensors"][0]["name"] == "layer.weight");
  CHECK(j["summary"]["skipped"] == nlohmann::ordered_json::array({5}));
  CHECK(j["summary"]["total"] == 12 * 3040);
}
