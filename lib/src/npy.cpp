#include "fpscope/npy.hpp"

#include "fpscope/convert.hpp"
#include "fpscope/input.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <exception>
#include <mutex>
#include <omp.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>

namespace fpscope {
namespace {

constexpr char magic[] = "\x93NUMPY";
constexpr std::size_t magic_len = 6;
constexpr std::string_view supported = "<f2, <f4, <f8, |u1, <u2, <u4";

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw npy_error(path + ": " + what);
}

std::string errno_text(int e) { return std::strerror(e); }

// One-line rendering of header text for messages: printable ASCII, at most 60 characters.
std::string excerpt(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (out.size() >= 60) {
      out += "...";
      break;
    }
    out += (c >= 32 && c < 127) ? c : '?';
  }
  return out;
}

// A Python literal as .npy headers write them: a dict of str keys whose values are str,
// True/False, int or tuples/lists of these.
struct literal {
  enum kind_t { string, boolean, integer, sequence, dict, none } kind = none;
  std::string str;
  bool b = false;
  std::uint64_t i = 0;
  std::vector<literal> items;                          // sequence
  std::vector<std::string> keys;  // dict: keys[i] -> items[i] (a vector of pairs of an incomplete
                                  // type is not portable; clang's libstdc++ check rejects it)
};

class header_parser {
 public:
  explicit header_parser(std::string_view s) : s_(s) {}

  literal parse_dict() {
    const literal v = value(0);
    skip_space();
    if (pos_ != s_.size()) error("unexpected '" + excerpt(s_.substr(pos_)) + "' after the dictionary");
    if (v.kind != literal::dict) error("not a dictionary");
    return v;
  }

 private:
  [[noreturn]] void error(const std::string& what) { throw std::invalid_argument(what); }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  literal value(int depth) {
    if (depth > 8) error("nested too deeply");
    skip_space();
    if (pos_ >= s_.size()) error("unexpected end");
    const char c = s_[pos_];
    literal v;
    if (c == '\'' || c == '"') {
      v.kind = literal::string;
      ++pos_;
      while (pos_ < s_.size() && s_[pos_] != c) {
        if (s_[pos_] == '\\') error("escapes in strings are not supported");
        v.str += s_[pos_++];
      }
      if (pos_ >= s_.size()) error("unterminated string");
      ++pos_;
    } else if (c >= '0' && c <= '9') {
      v.kind = literal::integer;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        const std::uint64_t d = std::uint64_t(s_[pos_++] - '0');
        if (v.i > (UINT64_MAX - d) / 10) error("integer too large");
        v.i = v.i * 10 + d;
      }
      if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    } else if (s_.substr(pos_, 4) == "True") {
      v.kind = literal::boolean, v.b = true, pos_ += 4;
    } else if (s_.substr(pos_, 5) == "False") {
      v.kind = literal::boolean, v.b = false, pos_ += 5;
    } else if (c == '(' || c == '[') {
      v.kind = literal::sequence;
      const char close = c == '(' ? ')' : ']';
      ++pos_;
      bool comma = true;
      while (!eat(close)) {
        if (!comma) error(std::string("expected ',' or '") + close + "'");
        v.items.push_back(value(depth + 1));
        comma = eat(',');
      }
      // (5) is the integer 5 in Python, not a tuple.
      if (c == '(' && v.items.size() == 1 && !comma) {
        literal inner = v.items[0];
        v = inner;
      }
    } else if (c == '{') {
      v.kind = literal::dict;
      ++pos_;
      bool comma = true;
      while (!eat('}')) {
        if (!comma) error("expected ',' or '}'");
        const literal key = value(depth + 1);
        if (key.kind != literal::string) error("dictionary keys must be strings");
        if (!eat(':')) error("expected ':' after '" + key.str + "'");
        v.keys.push_back(key.str);
        v.items.push_back(value(depth + 1));
        comma = eat(',');
      }
    } else {
      error("unexpected '" + excerpt(s_.substr(pos_)) + "'");
    }
    return v;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

std::optional<npy_dtype> parse_descr(std::string_view d) {
  if (d.size() != 3) return std::nullopt;
  const char order = d[0];
  const std::string_view t = d.substr(1);
  const bool one_byte = t == "u1";
  if (!(order == '<' || (one_byte && (order == '|' || order == '=' || order == '>')))) return std::nullopt;
  if (t == "f2") return npy_dtype::f2;
  if (t == "f4") return npy_dtype::f4;
  if (t == "f8") return npy_dtype::f8;
  if (t == "u1") return npy_dtype::u1;
  if (t == "u2") return npy_dtype::u2;
  if (t == "u4") return npy_dtype::u4;
  return std::nullopt;
}

std::uint32_t read_le(const unsigned char* p, int n) {
  std::uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- the SIGBUS guard ----
//
// A mapped file that another process truncates turns every read of a page past its new end into
// a SIGBUS, which kills the process (mmap(2)). Reading through pread instead would copy every
// chunk; instead the readers' mappings are registered here and a SIGBUS handler, when the faulting
// address lies in one of them, maps a page of zeros over the lost page (so the read completes)
// and marks the mapping; the reader then finds the mark (npy_reader::check_intact, after each
// chunk) and throws, so the zeros never reach an output. A SIGBUS anywhere else goes to the
// handler installed before, or kills as it would have. The handler touches only this fixed table
// and atomics, and calls mmap and sigaction (plain system calls on Linux).
constexpr int max_guarded = 64;
struct guarded_mapping {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 live
  std::atomic<std::uintptr_t> lo{0}, hi{0};
  std::atomic<bool> shrunk{false};
};
std::array<guarded_mapping, max_guarded> guarded;
struct sigaction previous_sigbus {};
std::uintptr_t page_size = 4096;
static_assert(std::atomic<std::uintptr_t>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigbus(int sig, siginfo_t* info, void* context) {
  const auto at = reinterpret_cast<std::uintptr_t>(info->si_addr);
  for (auto& g : guarded) {
    if (g.state.load() != 2 || at < g.lo.load() || at >= g.hi.load()) continue;
    void* page = reinterpret_cast<void*>(at & ~(page_size - 1));
    if (::mmap(page, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
      g.shrunk.store(true);
      return;  // the read runs again, on zeros
    }
  }
  if (previous_sigbus.sa_flags & SA_SIGINFO) {
    if (previous_sigbus.sa_sigaction) return previous_sigbus.sa_sigaction(sig, info, context);
  } else if (previous_sigbus.sa_handler != SIG_DFL && previous_sigbus.sa_handler != SIG_IGN) {
    return previous_sigbus.sa_handler(sig);
  }
  // Not ours and nobody else's: the faulting access runs again and is fatal, as without us.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGBUS, &dfl, nullptr);
}

// Registers [base, base + bytes) with the guard (installing the handler once); the slot, or -1
// when the table is full (that mapping is then unguarded, as before).
int guard_mapping(const std::byte* base, std::size_t bytes) {
  static const bool installed = [] {
    page_size = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    ::sigemptyset(&sa.sa_mask);
    return ::sigaction(SIGBUS, &sa, &previous_sigbus) == 0;
  }();
  if (!installed) return -1;
  for (int i = 0; i < max_guarded; ++i) {
    int expected = 0;
    if (guarded[i].state.compare_exchange_strong(expected, 1)) {
      guarded[i].lo = reinterpret_cast<std::uintptr_t>(base);
      guarded[i].hi = reinterpret_cast<std::uintptr_t>(base) + bytes;
      guarded[i].shrunk = false;
      guarded[i].state = 2;
      return i;
    }
  }
  return -1;
}

}  // namespace

std::string_view npy_descr(npy_dtype t) {
  switch (t) {
    case npy_dtype::f2: return "<f2";
    case npy_dtype::f4: return "<f4";
    case npy_dtype::f8: return "<f8";
    case npy_dtype::u1: return "|u1";
    case npy_dtype::u2: return "<u2";
    case npy_dtype::u4: return "<u4";
  }
  return "?";
}

std::string_view npy_type_name(npy_dtype t) {
  switch (t) {
    case npy_dtype::f2: return "float16";
    case npy_dtype::f4: return "float32";
    case npy_dtype::f8: return "float64";
    case npy_dtype::u1: return "uint8";
    case npy_dtype::u2: return "uint16";
    case npy_dtype::u4: return "uint32";
  }
  return "?";
}

std::size_t npy_itemsize(npy_dtype t) {
  switch (t) {
    case npy_dtype::u1: return 1;
    case npy_dtype::f2:
    case npy_dtype::u2: return 2;
    case npy_dtype::f4:
    case npy_dtype::u4: return 4;
    case npy_dtype::f8: return 8;
  }
  return 1;
}

npy_dtype npy_uint_dtype(int bytes) {
  switch (bytes) {
    case 1: return npy_dtype::u1;
    case 2: return npy_dtype::u2;
    case 4: return npy_dtype::u4;
    default: throw std::invalid_argument("npy_uint_dtype: no uint dtype of " + std::to_string(bytes) + " bytes");
  }
}

std::string npy_shape_string(std::span<const std::uint64_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ',';
  return s + ')';
}

// ---- reader ----

npy_reader::npy_reader(std::string path) : path_(std::move(path)) {
  std::optional<input_file> file;
  try {
    file.emplace(path_);  // never blocks on a FIFO; refuses anything but a regular file
  } catch (const input_error& e) {
    throw npy_error(e.what());
  }
  const std::uint64_t file_bytes = file->size();
  if (file_bytes == 0) fail(path_, "not an .npy file (empty file)");
  map_bytes_ = static_cast<std::size_t>(file_bytes);
  void* m = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, file->fd(), 0);
  const int map_errno = errno;
  file.reset();  // the mapping keeps the file
  if (m == MAP_FAILED) {
    map_bytes_ = 0;
    fail(path_, "cannot map: " + errno_text(map_errno));
  }
  base_ = static_cast<const std::byte*>(m);
  guard_ = guard_mapping(base_, map_bytes_);
  try {
    const auto* u = reinterpret_cast<const unsigned char*>(base_);
    if (file_bytes < magic_len || std::memcmp(u, magic, magic_len) != 0) fail(path_, "not an .npy file (bad magic)");
    if (file_bytes < magic_len + 2) fail(path_, "malformed .npy header: file ends inside the header");
    const int major = u[6], minor = u[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
      fail(path_, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                      " (supported: 1.0, 2.0, 3.0)");
    version_ = major;
    const std::size_t len_bytes = major == 1 ? 2 : 4;
    if (file_bytes < magic_len + 2 + len_bytes) fail(path_, "malformed .npy header: file ends inside the header");
    const std::uint64_t header_len = read_le(u + 8, int(len_bytes));
    data_offset_ = magic_len + 2 + len_bytes + header_len;
    if (data_offset_ > file_bytes)
      fail(path_, "malformed .npy header: header of " + std::to_string(header_len) + " bytes but the file has " +
                      std::to_string(file_bytes) + " bytes");
    const std::string_view text(reinterpret_cast<const char*>(u) + magic_len + 2 + len_bytes, header_len);

    literal dict;
    try {
      dict = header_parser(text).parse_dict();
    } catch (const std::invalid_argument& e) {
      fail(path_, std::string("malformed .npy header: ") + e.what());
    }
    const literal* descr = nullptr;
    const literal* fortran = nullptr;
    const literal* shape = nullptr;
    for (std::size_t i = 0; i < dict.keys.size(); ++i) {
      const std::string& k = dict.keys[i];
      const literal& v = dict.items[i];
      if (k == "descr") descr = &v;
      else if (k == "fortran_order") fortran = &v;
      else if (k == "shape") shape = &v;
      else fail(path_, "malformed .npy header: unexpected key '" + excerpt(k) + "'");
    }
    if (!descr || !fortran || !shape)
      fail(path_, std::string("malformed .npy header: missing key '") +
                      (!descr ? "descr" : !fortran ? "fortran_order" : "shape") + "'");
    if (descr->kind != literal::string)
      fail(path_, "unsupported dtype (structured or nested; supported: " + std::string(supported) + ")");
    if (fortran->kind != literal::boolean) fail(path_, "malformed .npy header: fortran_order is not True or False");
    if (shape->kind != literal::sequence)
      fail(path_, "malformed .npy header: shape is not a tuple of integers");
    for (const auto& d : shape->items)
      if (d.kind != literal::integer) fail(path_, "malformed .npy header: shape is not a tuple of integers");

    const std::string& d = descr->str;
    if (auto t = parse_descr(d)) {
      dtype_ = *t;
    } else if (d.size() >= 2 && d[0] == '>' && parse_descr("<" + d.substr(1))) {
      fail(path_, "big-endian dtype '" + excerpt(d) + "' is not supported (save it as '<" + excerpt(d.substr(1)) +
                      "', e.g. a.astype(a.dtype.newbyteorder('<')))");
    } else {
      fail(path_, "unsupported dtype '" + excerpt(d) + "' (supported: " + std::string(supported) + ")");
    }
    if (fortran->b)
      fail(path_, "Fortran-order arrays are not supported (save a C-order array: np.ascontiguousarray(a))");

    if (shape->items.size() > npy_max_read_dims)
      fail(path_, "malformed .npy header: " + std::to_string(shape->items.size()) + " dimensions (NumPy allows at most " +
                      std::to_string(npy_max_read_dims) + ")");
    count_ = 1;
    for (const auto& dim : shape->items) {
      shape_.push_back(dim.i);
      if (__builtin_mul_overflow(count_, dim.i, &count_)) fail(path_, "malformed .npy header: shape too large");
    }
    std::uint64_t expected = 0;
    if (__builtin_mul_overflow(count_, std::uint64_t(npy_itemsize(dtype_)), &expected))
      fail(path_, "malformed .npy header: shape too large");
    const std::uint64_t found = file_bytes - data_offset_;
    if (found < expected)
      fail(path_, "truncated data: expected " + std::to_string(expected) + " bytes, found " + std::to_string(found));
    check_intact();  // the header was read from the mapping too
    if (expected) ::madvise(const_cast<std::byte*>(base_), map_bytes_, MADV_SEQUENTIAL);
  } catch (...) {
    unmap();
    throw;
  }
}

npy_reader::~npy_reader() { unmap(); }

npy_reader::npy_reader(npy_reader&& o) noexcept
    : path_(std::move(o.path_)),
      base_(std::exchange(o.base_, nullptr)),
      map_bytes_(std::exchange(o.map_bytes_, 0)),
      guard_(std::exchange(o.guard_, -1)),
      data_offset_(o.data_offset_),
      version_(o.version_),
      dtype_(o.dtype_),
      shape_(std::move(o.shape_)),
      count_(o.count_) {}

npy_reader& npy_reader::operator=(npy_reader&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    base_ = std::exchange(o.base_, nullptr);
    map_bytes_ = std::exchange(o.map_bytes_, 0);
    guard_ = std::exchange(o.guard_, -1);
    data_offset_ = o.data_offset_;
    version_ = o.version_;
    dtype_ = o.dtype_;
    shape_ = std::move(o.shape_);
    count_ = o.count_;
  }
  return *this;
}

void npy_reader::unmap() noexcept {
  if (guard_ >= 0) guarded[std::size_t(guard_)].state.store(0);
  guard_ = -1;
  if (base_) ::munmap(const_cast<std::byte*>(base_), map_bytes_);
  base_ = nullptr;
  map_bytes_ = 0;
}

void npy_reader::check_intact() const {
  if (guard_ >= 0 && guarded[std::size_t(guard_)].shrunk.load())
    fail(path_, "the file shrank while it was being read (truncated by another process?)");
}

void npy_reader::check_type(std::size_t bytes, bool floating) const {
  const bool is_float = dtype_ == npy_dtype::f4 || dtype_ == npy_dtype::f8;
  if (bytes != npy_itemsize(dtype_) || floating != is_float)
    throw std::invalid_argument(path_ + ": values<T>() with a type that does not match dtype " +
                                std::string(npy_descr(dtype_)));
}

void npy_reader::release(std::uint64_t first, std::uint64_t n) const {
  check_intact();
  if (!base_ || n == 0) return;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t size = npy_itemsize(dtype_);
  std::uint64_t lo = data_offset_ + first * size;
  std::uint64_t hi = std::min<std::uint64_t>(data_offset_ + (first + n) * size, map_bytes_);
  lo = (lo + page - 1) / page * page;  // whole pages inside the range only
  hi = hi / page * page;
  if (hi > lo) ::madvise(const_cast<std::byte*>(base_) + lo, hi - lo, MADV_DONTNEED);
}

// ---- writer ----

namespace {
std::string make_header(npy_dtype dtype, std::span<const std::uint64_t> shape, int& version) {
  std::string dict = "{'descr': '" + std::string(npy_descr(dtype)) +
                     "', 'fortran_order': False, 'shape': " + npy_shape_string(shape) + ", }";
  // Total header (magic, version, length, dict, padding, '\n') is a multiple of 64 bytes.
  version = dict.size() + 1 + 10 <= 65535 ? 1 : 2;
  const std::size_t prefix = version == 1 ? 10 : 12;
  const std::size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - prefix - dict.size() - 1, ' ');
  dict += '\n';
  const std::size_t len = dict.size();
  std::string h(magic, magic_len);
  h += static_cast<char>(version);
  h += '\0';
  for (std::size_t i = 0; i < (version == 1 ? 2u : 4u); ++i) h += static_cast<char>((len >> (8 * i)) & 0xFF);
  return h + dict;
}

// Output failures are npy_errors here, as every other problem with an .npy file.
template <class F>
void as_npy_error(F&& f) {
  try {
    f();
  } catch (const output_error& e) {
    throw npy_error(e.what());
  }
}

std::uint64_t data_bytes_of(const std::string& path, npy_dtype dtype, std::span<const std::uint64_t> shape) {
  if (shape.size() > npy_max_write_dims)
    fail(path, "cannot write: " + std::to_string(shape.size()) + " dimensions (NumPy 1.x loads at most " +
                   std::to_string(npy_max_write_dims) + ")");
  std::uint64_t n = npy_itemsize(dtype);
  for (auto d : shape)
    if (__builtin_mul_overflow(n, d, &n)) fail(path, "cannot write: shape too large");
  return n;
}

}  // namespace

npy_writer::npy_writer(std::string path, npy_dtype dtype, std::vector<std::uint64_t> shape,
                       const output_options& opt) try
    : out_(std::move(path), opt), expected_(data_bytes_of(out_.path(), dtype, shape)) {
  int version = 1;
  const std::string header = make_header(dtype, shape, version);
  out_.write(header);
} catch (const output_error& e) {
  throw npy_error(e.what());
}

void npy_writer::write(const void* bytes, std::size_t n) {
  if (n > expected_ - written_) throw std::logic_error(path() + ": more data written than the shape declares");
  as_npy_error([&] { out_.write(bytes, n); });
  written_ += n;
}

void npy_writer::commit() {
  if (written_ != expected_)
    throw std::logic_error(path() + ": wrote " + std::to_string(written_) + " of " + std::to_string(expected_) +
                           " data bytes");
  as_npy_error([&] { out_.commit(); });
}

void for_each_chunk(const npy_reader& in, const format* codes, const std::function<void(std::span<const float>)>& f32,
                    const std::function<void(std::span<const double>)>& f64, int threads,
                    const std::function<void(std::size_t)>& done, std::size_t chunk) {
  const npy_dtype d = in.dtype();
  if ((d == npy_dtype::u1 || d == npy_dtype::u2 || d == npy_dtype::u4) && !codes)
    throw npy_error(in.path() + ": " + std::string(npy_type_name(d)) + " holds codes: name their format");
  chunk = std::max<std::size_t>(chunk, 1);
  const std::uint64_t chunks = (in.size() + chunk - 1) / chunk;
  const int nt = chunks > 1 ? (threads > 0 ? threads : omp_get_max_threads()) : 1;
  std::exception_ptr error;
  std::mutex m;
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> buf;  // this thread's decoded chunk (float16 and codes)
#pragma omp for schedule(dynamic, 1)
    for (std::uint64_t c = 0; c < chunks; ++c) {
      try {
        const std::uint64_t lo = c * chunk;
        const std::size_t n = std::size_t(std::min<std::uint64_t>(chunk, in.size() - lo));
        const auto decoded = [&](auto words, const format& f) {
          buf.resize(n);
          try {
            check_codes(words.subspan(lo, n), f, lo);
          } catch (const std::invalid_argument& e) {
            throw npy_error(in.path() + ": " + e.what());
          }
          decode(words.subspan(lo, n), std::span<float>(buf), f);
          return std::span<const float>(buf);
        };
        switch (d) {
          case npy_dtype::f4: f32(in.values<float>().subspan(lo, n)); break;
          case npy_dtype::f8: f64(in.values<double>().subspan(lo, n)); break;
          case npy_dtype::f2: f32(decoded(in.values<std::uint16_t>(), builtin(format_id::fp16))); break;
          case npy_dtype::u1: f32(decoded(in.values<std::uint8_t>(), *codes)); break;
          case npy_dtype::u2: f32(decoded(in.values<std::uint16_t>(), *codes)); break;
          case npy_dtype::u4: f32(decoded(in.values<std::uint32_t>(), *codes)); break;
        }
        in.release(lo, n);  // throws if the file shrank under this chunk
        if (done) done(n);
      } catch (...) {  // no exception may leave an OpenMP region: the first is rethrown after it
        const std::lock_guard lock(m);
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fpscope
