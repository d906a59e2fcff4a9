// fpscope-bench-hist-scale: `fpscope hist` at scale, as a user runs it (issue 20). The CLI itself
// is timed, a process per sample, on a float32 .npy of wide-range values (normal values times
// 2^-U(0,30), 5e8 by default: 2 GB) that the benchmark writes into /tmp first (never shipped)
// and reads from the page cache:
//
//   report    the default report: -f fp16,bf16,e4m3,e5m2 -s 2^0:2^31:2, default errors (the
//             recommendations' error statistics): goal within 2x of the one-spec pass
//   pass      the one-spec counting pass: -f fp16 -s 1 --errors none (the reference)
//   rows      every row of the table: each at 1 and at 2 threads, goals >= 1e9
//             values/s per core and >= 1.7x from the second core
//   convert   convert --to e4m3 of the same file (every value converted and written)
//
// Every case once per round, in a fresh shuffled order (harness.hpp), so that ratios pair
// samples taken under the same machine state. See tools/bench/README.md.
#include <fpscope/npy.hpp>

#include <fmt/format.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "harness.hpp"

extern char** environ;

using namespace fpscope::bench;

namespace {

struct scale_options {
  std::size_t values = 500'000'000;
  std::string file;  // default: /tmp/fpscope-hist-scale-<values>.npy
  std::string fpscope = FPSCOPE_BENCH_CLI;
  bool keep = false;
};

// Writes the data set unless a file of that size is there: x = z * 2^-u, z standard normal
// (Box-Muller on SplitMix64), u uniform in [0, 30), in 2^22-value chunks generated in parallel
// from per-chunk seeds (the same bytes whatever the thread count).
void make_data(const std::string& path, std::size_t n) {
  const std::uint64_t want = 128 + std::uint64_t(n) * 4;
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && std::filesystem::file_size(path, ec) == want) {
    try {
      const fpscope::npy_reader r(path);
      if (r.dtype() == fpscope::npy_dtype::f4 && r.size() == n) return;
    } catch (const std::exception&) {
    }
  }
  progress("writing {} values to {} ...\n", n, path);
  constexpr std::size_t chunk = std::size_t{1} << 22;
  fpscope::npy_writer w(path, fpscope::npy_dtype::f4, {n});
  std::vector<float> buf(std::size_t{16} * chunk);
  for (std::size_t lo = 0; lo < n; lo += buf.size()) {
    const std::size_t m = std::min(buf.size(), n - lo);
#pragma omp parallel for schedule(dynamic, 1)
    for (std::size_t c = 0; c < (m + chunk - 1) / chunk; ++c) {
      splitmix g{0x1234567ull + (lo + c * chunk) * 0x9E3779B97F4A7C15ull};
      for (std::size_t i = c * chunk; i < std::min(m, (c + 1) * chunk); ++i) {
        const double u1 = 1 - g.uniform(), u2 = g.uniform();
        const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
        buf[i] = static_cast<float>(z * std::exp2(-30 * g.uniform()));
      }
    }
    w.write(std::span<const float>(buf.data(), m));
  }
  w.commit();
}

// Runs the command (stdout and stderr to /dev/null); wall seconds, and the CPU seconds of the
// child in `cpu`. Throws when it cannot start or does not exit 0.
double run_command(const std::vector<std::string>& argv, double& cpu) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const auto t0 = clk::now();
  const int e = posix_spawn(&pid, a[0], &fa, nullptr, a.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (e != 0) throw std::runtime_error(fmt::format("cannot run {}: {}", argv[0], std::strerror(e)));
  int status = 0;
  rusage ru{};
  if (wait4(pid, &status, 0, &ru) < 0) throw std::runtime_error("wait4 failed");
  const double wall = seconds(clk::now() - t0);
  cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(fmt::format("{} failed (status {})", fmt::join(argv, " "), status));
  return wall;
}

struct a_case {
  std::string id, what, args;  // args after "fpscope hist FILE"
  bool row;                    // a row of the table (judged per core and per thread)
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.rounds_mem = 3;
  o.peers = false;
  scale_options me;
  parse(argc, argv, o,
        "fpscope hist at scale (issue 20): the default report, the counting pass, every row of the issue's\n"
        "table at 1 and 2 threads, and convert, each a process on the same page-cached file.\n",
        {quick_option(o, "3 rounds on 5e7 values (a smoke run)", o.mem_n, [&] { me.values = 50'000'000; }),
         size_option("--values", "values in the generated file", me.values),
         {"--file", "F", "the data file (default /tmp/fpscope-hist-scale-<values>.npy; written if absent)",
          [&](const std::string& v) { me.file = v; }},
         {"--fpscope", "PATH", "the fpscope binary to time (default: this build's)",
          [&](const std::string& v) { me.fpscope = v; }},
         flag("--keep", "keep the data file afterwards (default: removed)", [&] { me.keep = true; })});
  if (me.file.empty()) me.file = fmt::format("/tmp/fpscope-hist-scale-{}.npy", me.values);
  const std::string out_npy = me.file + ".e4m3.npy";

  return run("fpscope-bench-hist-scale", o, [&](session& s) {
    make_data(me.file, me.values);
    const std::size_t n = me.values;
    s.begin({fmt::format("- data: {} float32 values (normal * 2^-U(0,30)), {}, from the page cache", n, me.file),
             fmt::format("- timed: {} (a process per sample: wall time; CPU share = child CPU time / wall)", me.fpscope)},
            {});

    const std::vector<a_case> cases = {
        {"pass", "hist -f fp16 -s 1 --errors none (the one-spec counting pass)", "-f fp16 -s 1 --errors none", true},
        {"e4m3-sweep", "hist -f e4m3 -s 2^0:2^31:2 --errors none (16 scales)", "-f e4m3 -s 2^0:2^31:2 --errors none", true},
        {"fp16-sweep", "hist -f fp16 -s 2^0:2^31:2 --errors none", "-f fp16 -s 2^0:2^31:2 --errors none", true},
        {"bf16-sweep", "hist -f bf16 -s 2^0:2^31:2 --errors none", "-f bf16 -s 2^0:2^31:2 --errors none", true},
        {"fp16-s3", "hist -f fp16 -s 3 --errors none", "-f fp16 -s 3 --errors none", true},
        {"e4m3-errors", "hist -f e4m3 -s 2^10 --errors all (one row with error statistics)", "-f e4m3 -s 2^10 --errors all",
         true},
        {"report", "hist -f fp16,bf16,e4m3,e5m2 -s 2^0:2^31:2 (the default report)", "-f fp16,bf16,e4m3,e5m2 -s 2^0:2^31:2",
         true},
    };
    std::map<std::string, std::vector<double>> cpu;  // id -> CPU share per round
    item_set items;
    const auto split = [](const std::string& a) {
      std::vector<std::string> v;
      std::size_t i = 0;
      while (i < a.size()) {
        const std::size_t j = a.find(' ', i);
        v.push_back(a.substr(i, j - i));
        i = j == std::string::npos ? a.size() : j + 1;
      }
      return v;
    };
    // One sample: the command once, its CPU share kept for the report.
    const auto timed = [&cpu](std::vector<std::string> cmd, std::string id) {
      return [cmd = std::move(cmd), id = std::move(id), &cpu](int r) {
        double used = 0;
        const double w = run_command(cmd, used);
        if (r >= 0) cpu[id].push_back(used / w);
        return w;
      };
    };
    for (const auto& c : cases)
      for (const int th : {1, 2}) {
        std::vector<std::string> cmd = {me.fpscope, "hist", me.file, "-q", "--threads", std::to_string(th)};
        for (auto& w : split(c.args)) cmd.push_back(w);
        const std::string id = fmt::format("{}/t{}", c.id, th);
        items.add({.id = id, .group = c.id, .impl = c.what, .threads = th, .sample = timed(cmd, id)});
      }
    for (const int th : {1, 2}) {
      const std::string id = fmt::format("convert/t{}", th);
      items.add({.id = id, .group = "convert", .impl = "convert --to e4m3 -o FILE (for comparison)", .threads = th,
                 .sample = timed({me.fpscope, "convert", me.file, "--to", "e4m3", "-o", out_npy, "--threads",
                                  std::to_string(th)},
                                 id)});
    }
    s.measure(items, o.rounds_mem, 0.0, "hist at scale");

    const item& pass2 = items.get("pass/t2");
    std::vector<std::vector<std::string>> rows;
    json jcases = json::array();
    for (const auto& c : cases) {
      const item &t1 = items.get(c.id + "/t1"), &t2 = items.get(c.id + "/t2");
      const double m1 = median(t1.t), b1 = minimum(t1.t);
      const ratio sp = time_ratio(t2.t, t1.t), vs = time_ratio(pass2.t, t2.t);
      const double per_core = double(n) / m1, per_core_best = double(n) / b1;
      rows.push_back({"`" + c.args + "`", ms_cell(t2), fmt::format("{:.0f}%", 100 * median(cpu[c.id + "/t2"])), ms_cell(t1),
                      fmt::format("{:.2f}", per_core * 1e-9) + verdict(per_core, per_core_best, {1e9}),
                      ratio_cell(sp, {1.7}), ratio_cell(vs, c.id == "report" ? target{2.0, false} : target{})});
      s.goal("every row >= 1e9 values/s per core (1 thread)", c.id, per_core, per_core_best, {1e9}, "values/s");
      s.goal("every row >= 1.7x from the second core", c.id, sp.median, sp.best, {1.7}, "x");
      if (c.id == "report") s.goal("default report <= 2x the one-spec counting pass (2 threads)", c.id, vs.median, vs.best, {2.0, false}, "x");
      jcases.push_back({{"id", c.id}, {"args", c.args}, {"t1", item_json(t1, n, "values")}, {"t2", item_json(t2, n, "values")},
                        {"t2_over_t1", {sp.median, sp.best}}, {"t2_vs_pass_t2", {vs.median, vs.best}}});
    }
    for (const int th : {2, 1}) {
      const item& cv = items.get(fmt::format("convert/t{}", th));
      const ratio vs = time_ratio(items.get(fmt::format("pass/t{}", th)).t, cv.t);
      rows.push_back({fmt::format("`convert --to e4m3 -o FILE` ({} thread{})", th, th > 1 ? "s" : ""), th == 2 ? ms_cell(cv) : "-",
                      th == 2 ? fmt::format("{:.0f}%", 100 * median(cpu[cv.id])) : "-", th == 1 ? ms_cell(cv) : "-",
                      th == 1 ? fmt::format("{:.2f}", double(n) / median(cv.t) * 1e-9) : "-", "-", ratio_cell(vs)});
      jcases.push_back({{"id", cv.id}, {"item", item_json(cv, n, "values")}, {"vs_pass", {vs.median, vs.best}}});
    }
    s.emit("\n## `fpscope hist FILE ...` on {} values, {} interleaved rounds\n\n", n, o.rounds_mem);
    s.emit("Times: median (best) over rounds, a process each. Ratios paired per round, median (best/best).\n\n{}\n",
           table({"command", "2 threads: ms", "CPU share", "1 thread: ms", "1 thread: 1e9 values/s (goal >= 1)",
                  "2T speed-up (goal >= 1.7)", "x the counting pass, 2 threads (report: goal <= 2)"},
                 rows));
    s.out["cases"] = jcases;
    s.goals_report(goal_layout::every_case);
    std::error_code ec;
    std::filesystem::remove(out_npy, ec);
    if (!me.keep) std::filesystem::remove(me.file, ec);
  });
}
