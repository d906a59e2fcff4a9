// A writing process for the crash test of fpscope::trace_writer
// (tests/record/test_crash_trace_writer.py), deterministic so that a re-run writes every step
// bit for bit the same.
//
//   fpscope_trace_write_steps OUT.h5 [--steps N] [--max-steps M] [--big-step K] [--marks FILE] [--plain]
//       writes N steps (default 10) through fpscope::trace_writer(..., max_steps M: default
//       4096, trace_writer's own default): per step two layers of
//       scaled normals, a tensor with zeros, infinities, a NaN and a subnormal, an empty tensor,
//       and at step K (default 2) one of 2^20 + 5 elements (two chunks; mostly zeros); raw + histogram, histogram only and
//       raw only in turn. After the constructor returns it appends an 'M' record (type, value,
//       0 as in writelog.c) of value 2^64 - 1 to FILE (not with --plain: that constructor never
//       flushed), and after each end_step() one of the step.
//       --plain: the same steps written the way trace_writer did before it followed
//       docs/trace.md's "Writing safely" (the negative control): HDF5 defaults, variable-length
//       strings, each step group created in /steps, filled, @complete set, file flushed.
//   fpscope_trace_write_steps --read FILE
//       reads FILE with fpscope::trace_reader and prints one line per complete step,
//       "step GROUP HASH" (a hash of its attributes, its tensors' names, metadata, values bits and
//       histograms, in order), then "incomplete N". Exit status 3 with the message on a
//       trace_error.
//   fpscope_trace_write_steps --serve SECONDS
//       --read for each line "ID PATH" of stdin, each in a forked child (killed after SECONDS),
//       then "end ID STATUS".
#include <hdf5.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <random>
#include <sys/wait.h>
#include <string>
#include <unistd.h>
#include <vector>

#include "fpscope/histogram.hpp"
#include "fpscope/trace.hpp"

using namespace fpscope;

namespace {

struct tensor {
  std::string name;
  std::vector<float> values;
  std::vector<std::uint64_t> shape;
};

struct step_data {
  std::int64_t step;
  double loss;
  bool raw, hist;
  std::vector<tensor> tensors;
};

step_data make_step(std::int64_t step, std::int64_t big_step, std::mt19937_64& rng) {
  step_data s{step, double(step) / 3, step % 3 != 1, step % 3 != 2, {}};
  std::normal_distribution<double> normal;
  for (int i = 0; i < 2; ++i) {
    tensor t{"layer" + std::to_string(i) + "/weight", std::vector<float>(257 * std::size_t(i + 1)), {}};
    const double scale = std::ldexp(1.0, -int(rng() % 30));
    for (auto& v : t.values) v = float(normal(rng) * scale);
    t.shape = {t.values.size()};
    s.tensors.push_back(std::move(t));
  }
  tensor special{"special%", std::vector<float>(64), {8, 8}};
  for (auto& v : special.values) v = float(normal(rng));
  special.values[0] = 0.0f, special.values[1] = -0.0f, special.values[2] = INFINITY;
  special.values[3] = std::numeric_limits<float>::quiet_NaN(), special.values[4] = 1e-42f;
  s.tensors.push_back(std::move(special));
  s.tensors.push_back({"empty", {}, {0, 3}});
  if (step == big_step) {
    tensor big{"big", std::vector<float>((std::size_t{1} << 20) + 5), {}};
    // Mostly zeros, so that reading it back at every crash point is cheap.
    for (std::size_t i = 0; i < big.values.size(); i += 997) big.values[i] = float(normal(rng));
    big.shape = {big.values.size()};
    s.tensors.push_back(std::move(big));
  }
  return s;
}

void mark(int fd, std::uint64_t value) {
  if (fd < 0) return;
  unsigned char rec[17] = {'M'};
  for (int i = 0; i < 8; ++i) rec[1 + i] = (unsigned char)(value >> (8 * i));
  if (::write(fd, rec, sizeof rec) != ssize_t(sizeof rec)) std::perror("marks"), std::exit(1);
}

// ---- the plain scheme: trace_writer as it was (HDF5 defaults, flush after @complete) ----

void fail(const char* what) {
  std::fprintf(stderr, "plain writer: %s\n", what);
  std::exit(1);
}

void attr(hid_t obj, const char* name, hid_t type, const void* v, hsize_t n = 0, bool array = false) {
  const hid_t sp = array ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || H5Awrite(a, type, v) < 0) fail(name);
  H5Aclose(a), H5Sclose(sp);
}

void text(hid_t obj, const char* name, const std::string& s) {
  const hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  const char* p = s.c_str();
  attr(obj, name, t, &p);
  H5Tclose(t);
}

template <class T>
void dataset(hid_t loc, const char* name, hid_t file_type, hid_t mem_type, const std::vector<T>& v) {
  const hsize_t n = v.size();
  const hid_t sp = H5Screate_simple(1, &n, nullptr), dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (n > 0) {
    const hsize_t chunk = std::min<hsize_t>(n, hsize_t{1} << 20);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
  }
  const hid_t d = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0 || (n > 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)) fail(name);
  H5Dclose(d), H5Pclose(dcpl), H5Sclose(sp);
}

std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) out += c == '%' ? std::string("%25") : c == '/' ? std::string("%2F") : std::string(1, c);
  return out;
}

void plain_step(hid_t file, hid_t steps, const step_data& s) {
  char name[32];
  std::snprintf(name, sizeof name, "%08lld", static_cast<long long>(s.step));
  const hid_t g = H5Gcreate2(steps, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) fail("step group");
  const double lr = 0.05, scale = 1;
  attr(g, "step", H5T_STD_I64LE, &s.step);
  attr(g, "loss", H5T_IEEE_F64LE, &s.loss);
  attr(g, "lr", H5T_IEEE_F64LE, &lr);
  attr(g, "loss_scale", H5T_IEEE_F64LE, &scale);
  const hid_t ts = H5Gcreate2(g, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  for (const auto& t : s.tensors) {
    const hid_t tg = H5Gcreate2(ts, escape(t.name).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    text(tg, "dtype", "float32");
    attr(tg, "shape", H5T_STD_I64LE, t.shape.data(), t.shape.size(), true);
    std::uint64_t count = t.values.size(), zeros = 0, infs = 0, nans = 0;
    double amax = 0;
    for (const float x : t.values) {
      zeros += x == 0;
      infs += std::isinf(x);
      nans += std::isnan(x);
      if (std::isfinite(x)) amax = std::max(amax, double(std::fabs(x)));
    }
    attr(tg, "count", H5T_STD_U64LE, &count);
    attr(tg, "amax", H5T_IEEE_F64LE, &amax);
    attr(tg, "zeros", H5T_STD_U64LE, &zeros);
    attr(tg, "infs", H5T_STD_U64LE, &infs);
    attr(tg, "nans", H5T_STD_U64LE, &nans);
    if (s.raw) dataset(tg, "values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t.values);
    if (s.hist) {
      bucket_histogram b;
      b.add(t.values, 1);
      std::vector<std::uint32_t> keys;
      std::vector<std::uint64_t> counts;
      for (const auto& [k, n] : b.sparse()) keys.push_back(k), counts.push_back(n);
      dataset(tg, "hist_keys", H5T_STD_U32LE, H5T_NATIVE_UINT32, keys);
      dataset(tg, "hist_counts", H5T_STD_U64LE, H5T_NATIVE_UINT64, counts);
    }
    H5Gclose(tg);
  }
  const std::int8_t one = 1;
  attr(g, "complete", H5T_STD_I8LE, &one);
  H5Gclose(ts), H5Gclose(g);
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) fail("flush");
}

// ---- --read: every complete step through fpscope::trace_reader, hashed ----

struct fnv {
  std::uint64_t h = 1469598103934665603ull;
  void bytes(const void* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  }
  template <class T>
  void operator()(const T& v) {
    bytes(&v, sizeof v);
  }
  void operator()(const std::string& s) {
    (*this)(s.size());
    bytes(s.data(), s.size());
  }
};

int read(const char* path) {
  try {
    const trace_reader r(path);
    for (std::size_t i = 0; i < r.size(); ++i) {
      const auto s = r.step(i);
      fnv h;
      h(s.step), h(s.loss), h(s.lr), h(s.loss_scale), h(s.tensors.size());
      for (const auto& t : s.tensors) {
        h(t.name), h(t.group), h(t.dtype), h(t.shape.size());
        for (const auto e : t.shape) h(e);
        h(t.count), h(t.amax), h(t.zeros), h(t.infs), h(t.nans), h(t.has_values), h(t.has_hist);
        if (t.has_values) {
          std::uint64_t n = 0;
          r.values(s, t, [&](std::span<const float> v) { h.bytes(v.data(), v.size_bytes()), n += v.size(); });
          h(n);
        }
        if (t.has_hist)
          for (const auto& [k, c] : r.histogram(s, t)) h(k), h(c);
      }
      std::printf("step %s %016llx\n", s.group.c_str(), static_cast<unsigned long long>(h.h));
    }
    std::printf("incomplete %zu\n", r.incomplete().size());
    return 0;
  } catch (const trace_error& e) {
    std::printf("error %s\n", e.what());
    return 3;
  }
}

// --serve: --read for each line "ID PATH" of stdin, each in a forked child (HDF5 can crash or
// hang on a damaged file: killed after `seconds`), followed by "end ID STATUS" (the exit status,
// or "signal N"). Saves the start of a process per crash point.
int serve(unsigned seconds) {
  char line[4096];
  while (std::fgets(line, sizeof line, stdin)) {
    char* sp = std::strchr(line, ' ');
    if (!sp) continue;
    *sp = '\0';
    std::string path = sp + 1;
    while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
    std::fflush(stdout);
    const pid_t pid = ::fork();
    if (pid < 0) return std::perror("fork"), 1;
    if (pid == 0) {
      ::alarm(seconds);
      const int rc = read(path.c_str());
      std::fflush(stdout);
      ::_exit(rc);
    }
    int st = 0;
    ::waitpid(pid, &st, 0);
    if (WIFEXITED(st)) std::printf("end %s %d\n", line, WEXITSTATUS(st));
    else std::printf("end %s signal %d\n", line, WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--read") == 0) return read(argv[2]);
  if (argc == 3 && std::strcmp(argv[1], "--serve") == 0) return serve(unsigned(std::max(1L, std::stol(argv[2]))));
  std::string out, marks;
  long steps = 10, max_steps = 0, big_step = 2;
  bool plain = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) steps = std::stol(argv[++i]);
    else if (a == "--max-steps" && i + 1 < argc) max_steps = std::stol(argv[++i]);
    else if (a == "--big-step" && i + 1 < argc) big_step = std::stol(argv[++i]);
    else if (a == "--marks" && i + 1 < argc) marks = argv[++i];
    else if (a == "--plain") plain = true;
    else if (out.empty() && a.rfind("--", 0) != 0) out = a;
    else return std::fprintf(stderr, "usage: %s OUT.h5 [--steps N] [--max-steps M] [--big-step K] [--marks FILE] [--plain] | --read FILE\n", argv[0]), 2;
  }
  if (out.empty()) return std::fprintf(stderr, "no output file\n"), 2;
  const int mfd = marks.empty() ? -1 : ::open(marks.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  std::mt19937_64 rng(20240501);
  if (plain) {
    const hid_t file = H5Fcreate(out.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) fail("create");
    const std::int32_t v = trace_version;
    attr(file, "fpscope_trace_version", H5T_STD_I32LE, &v);
    text(file, "producer", "write_steps --plain");
    text(file, "model", "write_steps");
    text(file, "created", "2000-01-01T00:00:00Z");
    const hid_t g = H5Gcreate2(file, "steps", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (long k = 0; k < steps; ++k) {
      plain_step(file, g, make_step(k, big_step, rng));
      mark(mfd, std::uint64_t(k));
    }
    H5Gclose(g), H5Fclose(file);
    return 0;
  }
  try {
    trace_writer w(out, "write_steps", "write_steps", true, std::size_t(max_steps > 0 ? max_steps : 4096));
    mark(mfd, ~std::uint64_t{0});
    for (long k = 0; k < steps; ++k) {
      const step_data s = make_step(k, big_step, rng);
      w.begin_step(s.step, s.loss, 0.05);
      for (const auto& t : s.tensors) w.add(t.name, t.values, t.shape, s.raw, s.hist);
      w.end_step();
      mark(mfd, std::uint64_t(k));
    }
  } catch (const trace_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
