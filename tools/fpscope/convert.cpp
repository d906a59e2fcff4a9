// fpscope convert: bulk conversion of a float16/32/64 .npy into codes (or their values),
// streamed in chunks from the memory map so that a file larger than memory converts in
// bounded memory. The output appears only once complete (output.hpp), and never over the input.
#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <fmt/format.h>
#include <memory>
#include <mutex>
#include <omp.h>
#include <string>
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

// The chunks go round `workers` threads: each converts every workers-th chunk on its own (a
// serial encode into buffers of its own) and appends it to the output when its turn comes, the
// chunks in order, so that the output is streamed as before. While one thread writes (a copy
// into the page cache), the others go on converting. The earlier ways left a core idle or
// spinning: the writes in the converting loop took a serial fifth of the time with the other
// core spinning at the conversion's barrier (5e8 float32 values to e4m3 on 2 cores: 0.68-0.87
// s); a writer thread beside the conversion on both cores had the conversion's idle OpenMP
// thread spin on the writer's core at every chunk (0.53-0.98 s); beside a one-thread
// conversion, the writer idled two thirds of the time (0.43-0.48 s).
template <class W>
void convert_all(const npy_reader& in, npy_writer& out, const convert_options& o, class_counts* counts) {
  const format& f = o.conv.fmt;
  const std::uint64_t total = in.size();
  const std::size_t chunk =
      static_cast<std::size_t>(std::min<std::uint64_t>(std::max<std::uint64_t>(o.chunk, 1), total ? total : 1));
  const std::uint64_t chunks = (total + chunk - 1) / chunk;
  const int workers =
      int(std::max<std::uint64_t>(1, std::min<std::uint64_t>(o.threads > 0 ? o.threads : omp_get_max_threads(), chunks)));
  progress bar("converting", total, in.data_bytes(), !o.quiet);
  std::mutex m;
  std::condition_variable turn_cv;
  std::uint64_t turn = 0;  // the chunk to be written next
  bool stop = false;
  std::exception_ptr error;

#pragma omp parallel num_threads(workers)
  {
    // The team OpenMP gave (it may give fewer threads than asked: OMP_THREAD_LIMIT, OMP_DYNAMIC):
    // every chunk must have a thread, or its turn would never come.
    const std::size_t w = std::size_t(omp_get_thread_num()), team = std::size_t(omp_get_num_threads());
    std::array<std::uint64_t, value_class_count> mine{};  // this thread's class counts (-v), added at its end
    try {
      std::vector<W> codes(chunk);
      std::vector<float> staged(in.dtype() == npy_dtype::f2 ? chunk : 0);  // float16 decoded to float32
      std::vector<float> values(o.decode ? chunk : 0);
      for (std::uint64_t c = w; c < chunks; c += team) {
        const std::uint64_t first = c * chunk;
        const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, total - first));
        const std::span<W> dst(codes.data(), k);
        // One thread per chunk: encode serially; decode (no thread option) would open a nested
        // region for a chunk of parallel_threshold values, which OpenMP runs on this one thread
        // (one active level unless OMP_MAX_ACTIVE_LEVELS says more).
        const bulk_options bo{o.conv.scale, first, 1};
        switch (in.dtype()) {
          case npy_dtype::f4: encode(in.values<float>().subspan(first, k), dst, f, o.conv.pol, bo); break;
          case npy_dtype::f8: encode(in.values<double>().subspan(first, k), dst, f, o.conv.pol, bo); break;
          case npy_dtype::f2: {
            // Exact: every float16 is a float32.
            decode(in.values<std::uint16_t>().subspan(first, k), std::span<float>(staged.data(), k),
                   builtin(format_id::fp16));
            encode(std::span<const float>(staged.data(), k), dst, f, o.conv.pol, bo);
            break;
          }
          default: throw std::logic_error("convert: unexpected input dtype");
        }
        if (counts)
          for (std::size_t i = 0; i < k; ++i) ++mine[counts->table[dst[i]]];
        if (o.decode) decode(std::span<const W>(dst), std::span<float>(values.data(), k), f);
        in.release(first, k);
        std::unique_lock lock(m);
        turn_cv.wait(lock, [&] { return turn == c || stop; });
        if (stop) break;
        // The turn is this thread's alone until it passes it on: the others only wait for theirs.
        lock.unlock();
        if (o.decode)
          out.write(values.data(), k * sizeof(float));
        else
          out.write(dst.data(), dst.size_bytes());
        bar.update(first + k);
        lock.lock();
        ++turn;
        turn_cv.notify_all();
      }
      if (counts) {
        const std::lock_guard lock(m);
        for (std::size_t i = 0; i < mine.size(); ++i) counts->n[i] += mine[i];
      }
    } catch (...) {
      const std::lock_guard lock(m);
      if (!error) error = std::current_exception();
      stop = true;
      turn_cv.notify_all();
    }
  }
  if (error) std::rethrow_exception(error);
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
                     "OpenMP threads, each converting chunks and writing them in turn (0: all cores) [default: 0]");
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
