// fpscope convert: bulk conversion of a float16/32/64 .npy into codes (or their values),
// streamed in chunks from the memory map so that a file larger than memory converts in
// bounded memory. The output appears only once complete (output.hpp), and never over the input.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <fmt/format.h>
#include <memory>
#include <mutex>
#include <omp.h>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "text.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/npy.hpp"

namespace fpscope::cli {
namespace {

struct convert_options {
  conversion_options conv;
  std::string input, output;
  bool decode = false;
  bool verbose = false;
  bool quiet = false;
  std::uint64_t chunk = std::uint64_t{1} << 20;
  int threads = 0;
};

// Counts of result classes (for --verbose), by a per-code table.
struct class_counts {
  std::array<std::uint64_t, value_class_count> n{};
  std::vector<std::uint8_t> table;
  explicit class_counts(const format& f) : table(std::size_t(f.mask()) + 1) {
    for (std::uint32_t c = 0; c <= f.mask(); ++c) table[c] = static_cast<std::uint8_t>(classify(c, f));
  }
};

// Writes each converted chunk on a thread of its own while the next one converts. The write
// (a copy into the page cache) took a serial fifth of convert's time, with the other core
// spinning at the conversion's barrier: 5e8 float32 values to e4m3 took 0.68-0.87 s on 2
// cores, against 0.22-0.24 s for hist's counting pass of the same file. One chunk in flight:
// put() waits for the previous write, so the two buffers the caller alternates between are
// never written while they are filled.
class chunk_writer {
 public:
  explicit chunk_writer(npy_writer& out) : out_(out), t_([this] { loop(); }) {}
  chunk_writer(const chunk_writer&) = delete;
  chunk_writer& operator=(const chunk_writer&) = delete;
  ~chunk_writer() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
    }
    cv_.notify_all();
    t_.join();
  }
  // Hands over n bytes at p, which stay untouched until the next put() or finish() returns.
  // Rethrows the error of an earlier write.
  void put(const void* p, std::size_t n) {
    std::unique_lock lock(m_);
    cv_.wait(lock, [this] { return !busy_; });
    if (error_) std::rethrow_exception(error_);
    p_ = p, n_ = n, busy_ = true;
    cv_.notify_all();
  }
  // Waits for the last write; rethrows its error.
  void finish() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [this] { return !busy_; });
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop() {
    std::unique_lock lock(m_);
    for (;;) {
      cv_.wait(lock, [this] { return busy_ || stop_; });
      if (!busy_) return;  // stopped with nothing left
      lock.unlock();
      std::exception_ptr e;
      try {
        if (!error_) out_.write(p_, n_);
      } catch (...) {
        e = std::current_exception();
      }
      lock.lock();
      if (e) error_ = e;
      busy_ = false;
      cv_.notify_all();
    }
  }
  npy_writer& out_;
  std::mutex m_;
  std::condition_variable cv_;
  const void* p_ = nullptr;
  std::size_t n_ = 0;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread t_;  // last: starts once the rest is built
};

// The conversion's threads beside the writer's: one core fewer where they would take every core.
// Otherwise, at each chunk, the conversion's idle OpenMP threads spin while the writer copies
// into the page cache, on the core the writer needs: 5e8 float32 values to e4m3 on 2 cores took
// 0.53-0.98 s (user time 0.70-1.16 s) on 2 conversion threads, 0.46-0.49 s on one.
int conversion_threads(int requested) {
  const int t = requested > 0 ? requested : omp_get_max_threads();
  return t > 1 && t >= omp_get_num_procs() ? t - 1 : requested;
}

template <class W>
void convert_all(const npy_reader& in, npy_writer& out, const convert_options& o, class_counts* counts) {
  const format& f = o.conv.fmt;
  const std::uint64_t total = in.size();
  const std::size_t chunk =
      static_cast<std::size_t>(std::min<std::uint64_t>(std::max<std::uint64_t>(o.chunk, 1), total ? total : 1));
  // Two of each output buffer: one being written while the other fills.
  std::array<std::vector<W>, 2> codes{std::vector<W>(chunk), std::vector<W>(total > chunk ? chunk : 0)};
  std::vector<float> staged(in.dtype() == npy_dtype::f2 ? chunk : 0);  // float16 decoded to float32
  std::array<std::vector<float>, 2> values{std::vector<float>(o.decode ? chunk : 0),
                                           std::vector<float>(o.decode && total > chunk ? chunk : 0)};
  progress bar("converting", total, in.data_bytes(), !o.quiet);
  chunk_writer writer(out);
  const int threads = conversion_threads(o.threads);

  for (std::uint64_t first = 0, k = 0; first < total; first += chunk, k ^= 1) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, total - first));
    const std::span<W> dst(codes[k].data(), n);
    const bulk_options bo{o.conv.scale, first, threads};
    switch (in.dtype()) {
      case npy_dtype::f4: encode(in.values<float>().subspan(first, n), dst, f, o.conv.pol, bo); break;
      case npy_dtype::f8: encode(in.values<double>().subspan(first, n), dst, f, o.conv.pol, bo); break;
      case npy_dtype::f2: {
        // Exact: every float16 is a float32.
        decode(in.values<std::uint16_t>().subspan(first, n), std::span<float>(staged.data(), n),
               builtin(format_id::fp16));
        encode(std::span<const float>(staged.data(), n), dst, f, o.conv.pol, bo);
        break;
      }
      default: throw std::logic_error("convert: unexpected input dtype");
    }
    if (counts)
      for (std::size_t i = 0; i < n; ++i) ++counts->n[counts->table[dst[i]]];
    if (o.decode) {
      decode(std::span<const W>(dst), std::span<float>(values[k].data(), n), f);
      writer.put(values[k].data(), n * sizeof(float));
    } else {
      writer.put(dst.data(), dst.size_bytes());
    }
    in.release(first, n);
    bar.update(first + n);
  }
  writer.finish();
}

int run(convert_options& o) {
  resolve(o.conv);
  const npy_reader in(o.input);
  if (in.dtype() != npy_dtype::f2 && in.dtype() != npy_dtype::f4 && in.dtype() != npy_dtype::f8)
    throw npy_error(fmt::format("{}: convert reads float16, float32 or float64 arrays, not {} ('{}')", o.input,
                                npy_type_name(in.dtype()), npy_descr(in.dtype())));
  const format& f = o.conv.fmt;
  const npy_dtype out_type = o.decode ? npy_dtype::f4 : npy_uint_dtype(f.storage_bytes());
  output_options refuse;
  refuse.inputs = {o.input};  // -o IN would destroy what is being read
  npy_writer out(o.output, out_type, in.shape(), refuse);
  std::unique_ptr<class_counts> counts = o.verbose ? std::make_unique<class_counts>(f) : nullptr;
  switch (f.storage_bytes()) {
    case 1: convert_all<std::uint8_t>(in, out, o, counts.get()); break;
    case 2: convert_all<std::uint16_t>(in, out, o, counts.get()); break;
    default: convert_all<std::uint32_t>(in, out, o, counts.get()); break;
  }
  out.commit();

  if (o.verbose) {
    fmt::print("{}: {} {} -> {}: {} {}, {}\n", printable(o.input), npy_type_name(in.dtype()),
               npy_shape_string(in.shape()), printable(o.output), npy_type_name(out_type), o.decode ? "values" : "codes", o.conv.describe());
    const auto& n = counts->n;
    std::vector<std::string> parts;
    for (value_class c : {value_class::normal, value_class::subnormal, value_class::zero, value_class::infinite,
                          value_class::nan})
      parts.push_back(fmt::format("{} {}", n[std::size_t(c)], name(c)));
    fmt::print("  {} values: {}\n", in.size(), fmt::join(parts, ", "));
  }
  return exit_ok;
}

runner setup(CLI::App& app) {
  auto o = std::make_shared<convert_options>();
  auto* sub = app.add_subcommand("convert", "convert a float16/32/64 .npy file to a format's codes");
  sub->add_option("IN", o->input, "input .npy: float16, float32 or float64, C order, little-endian")->required();
  sub->add_option("-o,--output", o->output,
                  "output .npy: uint8/uint16/uint32 codes of the format (same shape); it appears\n"
                  "only when complete, replacing a regular file (not IN, a device or a FIFO)")
      ->required();
  add_conversion_options(*sub, o->conv);
  sub->add_flag("--decode", o->decode, "write the converted values as float32 instead of codes");
  add_threads_option(*sub, o->threads, "--threads",
                     "OpenMP threads (0: all cores; taking every core, the conversion leaves one to the "
                     "thread that writes) [default: 0]");
  sub->add_option("--chunk", o->chunk, "elements converted per step (bounds memory) [default: 1048576]")
      ->check(count_check(true));
  sub->add_flag("-v,--verbose", o->verbose, "print what was written and how many results of each class");
  sub->add_flag("-q,--quiet", o->quiet, "no progress bar");
  sub->footer(
      "Inputs are multiplied by --scale in their own precision (float32 for float16/float32\n"
      "inputs, float64 for float64), then rounded once. float16 inputs are decoded exactly to\n"
      "float32 first. Stochastic rounding (--rounding sr) draws for element i from (--seed, i),\n"
      "so the result does not depend on --chunk or --threads.\n"
      "Codes are stored in the smallest unsigned word that holds them: uint8 for 8 bits and\n"
      "less, uint16 for fp16/bf16, uint32 for tf32. A progress bar shows on a terminal.\n"
      "\n"
      "Examples:\n"
      "  fpscope convert w.npy --to e4m3 -o w_e4m3.npy\n"
      "  fpscope convert w.npy --to bf16 --rounding sr --seed 1 -o w_bf16.npy\n"
      "  fpscope convert act.npy --to e4m3 --scale 64 --profile cuda -o act8.npy\n"
      "  fpscope convert w.npy --to fp16 --decode -o w_as_fp16_values.npy");
  return [o] { return run(*o); };
}

const registrar reg{"convert", 30, &setup};

}  // namespace
}  // namespace fpscope::cli
