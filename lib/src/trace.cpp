#include "fpscope/trace.hpp"

#include <hdf5.h>
#include <omp.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <cerrno>
#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#include "fpscope/convert.hpp"
#include "fpscope/histogram.hpp"

namespace fpscope {
namespace {

// Owns an HDF5 identifier; closes it with the function of its kind.
class id {
 public:
  id() = default;
  id(hid_t v, herr_t (*close)(hid_t)) : v_(v), close_(close) {}
  id(id&& o) noexcept : v_(std::exchange(o.v_, H5I_INVALID_HID)), close_(o.close_) {}
  id& operator=(id&& o) noexcept {
    std::swap(v_, o.v_);
    std::swap(close_, o.close_);
    return *this;
  }
  ~id() {
    if (v_ >= 0 && close_) close_(v_);
  }
  operator hid_t() const { return v_; }
  bool ok() const { return v_ >= 0; }

 private:
  hid_t v_ = H5I_INVALID_HID;
  herr_t (*close_)(hid_t) = nullptr;
};

// HDF5's own error stack printing is off: every failure becomes one trace_error line. A
// thread-safe libhdf5 (Debian's) keeps that setting per thread, so each entry point quiets the
// thread it runs on (a worker thread, an OpenMP thread that reads chunks), once.
void quiet_hdf5() {
  thread_local const bool quiet = H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr) >= 0;
  (void)quiet;
}

std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) out += c == '%' ? std::string("%25") : c == '/' ? std::string("%2F") : std::string(1, c);
  return out;
}

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "%25") == 0) out += '%', i += 2;
    else if (s.compare(i, 3, "%2F") == 0) out += '/', i += 2;
    else out += s[i];
  }
  return out;
}

// A dataset's filter pipeline, in the order the filters were applied when writing (a filter
// that cannot be read is H5Z_FILTER_ERROR); nullopt when the pipeline cannot be read at all.
std::optional<std::vector<H5Z_filter_t>> filters(hid_t dcpl) {
  const int n = H5Pget_nfilters(dcpl);
  if (n < 0) return std::nullopt;
  std::vector<H5Z_filter_t> out;
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, conf = 0;
    std::size_t nv = 0;
    out.push_back(H5Pget_filter2(dcpl, unsigned(i), &flags, &nv, nullptr, 0, nullptr, &conf));
  }
  return out;
}

// Whether the bytes stored for a dataset cover its shape. libhdf5 1.10 does not check this: it
// copies a whole chunk (or the whole compact data) out of a shorter buffer (an over-read the
// fuzzer found under ASan). Chunks that pass through a size-changing filter (deflate) are
// checked by the filter itself or, on the raw path, by values_parallel.
bool stored_sizes_ok(hid_t ds, hid_t dcpl) {
  const id type(H5Dget_type(ds), H5Tclose), space(H5Dget_space(ds), H5Sclose);
  const std::size_t size = H5Tget_size(type);
  const hssize_t points = H5Sget_simple_extent_npoints(space);
  if (size == 0 || points < 0) return false;
  switch (H5Pget_layout(dcpl)) {
    case H5D_COMPACT: return H5Dget_storage_size(ds) >= hsize_t(points) * size;
    case H5D_CHUNKED: {
      for (const H5Z_filter_t f : filters(dcpl).value_or(std::vector<H5Z_filter_t>{}))
        if (f != H5Z_FILTER_SHUFFLE) return true;
      hsize_t chunk = 0, len = 0;
      if (H5Sget_simple_extent_ndims(space) != 1) return true;  // not a trace's: refused elsewhere
      if (H5Pget_chunk(dcpl, 1, &chunk) != 1 || chunk == 0) return false;
      H5Sget_simple_extent_dims(space, &len, nullptr);
      for (hsize_t at = 0; at < len; at += chunk) {
        // By coordinate: the size the chunk index records (H5Dget_chunk_storage_size reports
        // the chunk's nominal size for unfiltered chunks, whatever is stored).
        unsigned mask = 0;
        haddr_t addr = 0;
        hsize_t stored = 0;
        if (H5Dget_chunk_info_by_coord(ds, &at, &mask, &addr, &stored) < 0) return false;
        if (addr != HADDR_UNDEF && stored != chunk * size) return false;  // undefined: never written
      }
      return true;
    }
    default: return true;  // contiguous: HDF5 reads the file, which it checks against its end
  }
}

class context {
 public:
  explicit context(std::string where) : where_(std::move(where)) {}
  [[noreturn]] void fail(const std::string& what) const { throw trace_error(where_ + ": " + what); }
  const std::string& where() const { return where_; }

  // A child reached only through a hard link: soft and external links are refused.
  void hard_link(hid_t loc, const std::string& name) const {
    H5L_info_t info;
    if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) fail("missing '" + name + "'");
    if (H5Lget_info(loc, name.c_str(), &info, H5P_DEFAULT) < 0) fail("cannot read the link '" + name + "'");
    if (info.type != H5L_TYPE_HARD) fail("'" + name + "' is a soft or external link: refused");
  }
  id group(hid_t loc, const std::string& name) const {
    hard_link(loc, name);
    id g(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), H5Gclose);
    if (!g.ok()) fail("'" + name + "' is not a group");
    return g;
  }
  id dataset(hid_t loc, const std::string& name) const {
    hard_link(loc, name);
    id d(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d.ok()) fail("'" + name + "' is not a dataset");
    const id dcpl(H5Dget_create_plist(d), H5Pclose);
    if (H5Pget_layout(dcpl) == H5D_VIRTUAL) fail("'" + name + "' is a virtual dataset: refused");
    if (H5Pget_external_count(dcpl) != 0) fail("'" + name + "' has external storage: refused");
    if (!stored_sizes_ok(d, dcpl)) fail("'" + name + "' is corrupt (stored data shorter than its shape)");
    return d;
  }
  id attribute(hid_t obj, const char* name) const {
    if (H5Aexists(obj, name) <= 0) fail(std::string("missing attribute '") + name + "'");
    id a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) fail(std::string("cannot open attribute '") + name + "'");
    return a;
  }
  // The element count of an attribute's dataspace (a null dataspace is empty).
  hssize_t elements(hid_t attr) const {
    const id sp(H5Aget_space(attr), H5Sclose);
    if (H5Sget_simple_extent_type(sp) == H5S_NULL) return 0;
    return H5Sget_simple_extent_npoints(sp);
  }
  template <class T>
  T number(hid_t obj, const char* name, hid_t mem) const {
    const id a = attribute(obj, name);
    const id t(H5Aget_type(a), H5Tclose);
    const H5T_class_t c = H5Tget_class(t);
    if (c != H5T_INTEGER && c != H5T_FLOAT) fail(std::string("attribute '") + name + "' is not a number");
    if (elements(a) != 1) fail(std::string("attribute '") + name + "' is not a single number");
    if constexpr (std::is_integral_v<T>)
      if (c != H5T_INTEGER) fail(std::string("attribute '") + name + "' is not an integer");
    T v{};
    if (H5Aread(a, mem, &v) < 0) fail(std::string("cannot read attribute '") + name + "'");
    return v;
  }
  std::uint64_t count(hid_t obj, const char* name) const {
    const auto v = number<std::int64_t>(obj, name, H5T_NATIVE_INT64);
    if (v < 0) fail(std::string("attribute '") + name + "' is negative");
    return std::uint64_t(v);
  }
  std::string text(hid_t obj, const char* name) const {
    const id a = attribute(obj, name);
    const id t(H5Aget_type(a), H5Tclose);
    if (H5Tget_class(t) != H5T_STRING || elements(a) != 1) fail(std::string("attribute '") + name + "' is not a string");
    if (H5Tis_variable_str(t) > 0) {
      char* s = nullptr;
      const id mt(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mt, H5T_VARIABLE);
      H5Tset_cset(mt, H5Tget_cset(t));
      if (H5Aread(a, mt, &s) < 0) fail(std::string("cannot read attribute '") + name + "'");
      std::string out = s ? s : "";
      const id sp(H5Aget_space(a), H5Sclose);
      H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &s);
      return out;
    }
    const std::size_t n = H5Tget_size(t);
    if (n > (1u << 20)) fail(std::string("attribute '") + name + "' is absurdly long");
    std::string out(n, '\0');
    if (H5Aread(a, t, out.data()) < 0) fail(std::string("cannot read attribute '") + name + "'");
    out.resize(std::strlen(out.c_str()));
    return out;
  }

 private:
  std::string where_;
};

// The group of tensor t in step s (steps: the /steps group).
id tensor_group(const context& c, hid_t steps, const trace_step& s, const trace_tensor& t) {
  return c.group(c.group(c.group(steps, s.group), "tensors"), t.group);
}

herr_t collect(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

// Links in creation order where the group tracks it (the recorder's: tensors in recording
// order), else in name order.
std::vector<std::string> children(hid_t g) {
  std::vector<std::string> names;
  hsize_t at = 0;
  if (H5Literate(g, H5_INDEX_CRT_ORDER, H5_ITER_INC, &at, collect, &names) >= 0) return names;
  names.clear();
  at = 0;
  H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &at, collect, &names);
  return names;
}

// The HDF5 storage type a dtype must have: class, size.
std::pair<H5T_class_t, std::size_t> storage(trace_dtype t) {
  switch (t) {
    case trace_dtype::float32: return {H5T_FLOAT, 4};
    case trace_dtype::float16:
    case trace_dtype::bfloat16: return {H5T_INTEGER, 2};
    default: return {H5T_INTEGER, 1};
  }
}

}  // namespace

std::string_view name(trace_dtype t) {
  switch (t) {
    case trace_dtype::float32: return "float32";
    case trace_dtype::float16: return "float16";
    case trace_dtype::bfloat16: return "bfloat16";
    case trace_dtype::e4m3: return "float8_e4m3fn";
    case trace_dtype::e5m2: return "float8_e5m2";
  }
  return "?";
}

std::optional<trace_dtype> find_trace_dtype(std::string_view s) {
  for (int i = 0; i <= int(trace_dtype::e5m2); ++i)
    if (name(trace_dtype(i)) == s) return trace_dtype(i);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------

struct trace_reader::handle {
  id file, steps;
};

trace_reader::trace_reader(const std::string& path) : path_(path), h_(std::make_unique<handle>()) {
  quiet_hdf5();
  const context c(path);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) c.fail("no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) c.fail("not an HDF5 file");
  const id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  h_->file = id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!h_->file.ok()) c.fail("cannot open (truncated or corrupt HDF5 file)");
  const auto version = c.number<std::int64_t>(h_->file, "fpscope_trace_version", H5T_NATIVE_INT64);
  if (version != trace_version)
    c.fail("trace format version " + std::to_string(version) + " is not supported (this fpscope reads version " +
           std::to_string(trace_version) + ")");
  producer_ = c.text(h_->file, "producer");
  model_ = c.text(h_->file, "model");
  h_->steps = c.group(h_->file, "steps");
  // A last step the writer did not finish (no `complete` attribute) is reported apart.
  const auto names = children(h_->steps);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const context sc(path + ": step " + names[i]);
    const id g = sc.group(h_->steps, names[i]);
    if (H5Aexists(g, "complete") > 0) {
      steps_.push_back(names[i]);
    } else if (i + 1 == names.size()) {
      incomplete_.push_back(sc.where() + ": not finished by its writer (no 'complete' attribute)");
    } else {
      sc.fail("not finished by its writer (no 'complete' attribute), yet later steps follow: corrupt file");
    }
  }
}

trace_reader::~trace_reader() = default;

trace_step trace_reader::step(std::size_t i) const {
  quiet_hdf5();
  if (i >= steps_.size()) throw trace_error(path_ + ": no step " + std::to_string(i));
  trace_step s;
  s.group = steps_[i];
  const context c(path_ + ": step " + s.group);
  const id g = c.group(h_->steps, s.group);
  s.step = c.number<std::int64_t>(g, "step", H5T_NATIVE_INT64);
  s.loss = c.number<double>(g, "loss", H5T_NATIVE_DOUBLE);
  s.lr = c.number<double>(g, "lr", H5T_NATIVE_DOUBLE);
  s.loss_scale = c.number<double>(g, "loss_scale", H5T_NATIVE_DOUBLE);
  const id tensors = c.group(g, "tensors");
  for (const auto& link : children(tensors)) {
    trace_tensor t;
    t.group = link;
    t.name = unescape(link);
    const context tc(c.where() + ", tensor " + t.name);
    const id tg = tc.group(tensors, link);
    const std::string dt = tc.text(tg, "dtype");
    const auto d = find_trace_dtype(dt);
    if (!d) tc.fail("unknown dtype '" + dt + "'");
    t.dtype = *d;
    {
      const id a = tc.attribute(tg, "shape");
      const hssize_t n = tc.elements(a);
      if (n < 0 || n > 32) tc.fail("shape has an absurd rank");
      t.shape.resize(std::size_t(n));
      const id at(H5Aget_type(a), H5Tclose);
      if (n > 0 && (H5Tget_class(at) != H5T_INTEGER || H5Aread(a, H5T_NATIVE_UINT64, t.shape.data()) < 0))
        tc.fail("shape is not a list of integers");
    }
    t.count = tc.count(tg, "count");
    if (t.count > (std::uint64_t{1} << 40)) tc.fail("count " + std::to_string(t.count) + " is absurd");
    long double product = 1;
    for (const auto e : t.shape) product *= (long double)e;
    if (product != (long double)t.count) tc.fail("count " + std::to_string(t.count) + " is not the product of the shape");
    t.amax = tc.number<double>(tg, "amax", H5T_NATIVE_DOUBLE);
    t.zeros = tc.count(tg, "zeros");
    t.infs = tc.count(tg, "infs");
    t.nans = tc.count(tg, "nans");
    if (t.zeros > t.count || t.infs > t.count || t.nans > t.count) tc.fail("zero/inf/NaN counts exceed count");
    t.has_values = H5Lexists(tg, "values", H5P_DEFAULT) > 0;
    t.has_hist = H5Lexists(tg, "hist_keys", H5P_DEFAULT) > 0;
    if (!t.has_values && !t.has_hist) tc.fail("neither values nor a histogram");
    if (t.has_values) {
      const id ds = tc.dataset(tg, "values");
      const id ty(H5Dget_type(ds), H5Tclose);
      const auto [cls, size] = storage(t.dtype);
      if (H5Tget_class(ty) != cls || H5Tget_size(ty) != size)
        tc.fail("values are not stored as " + std::string(cls == H5T_FLOAT ? "float" : "uint") +
                std::to_string(8 * size) + " as dtype " + dt + " requires");
      if (cls == H5T_INTEGER && H5Tget_sign(ty) != H5T_SGN_NONE) tc.fail("raw bits must be unsigned integers");
      if (H5Tget_order(ty) != H5T_ORDER_LE && size > 1) tc.fail("values are not little-endian");
      const id sp(H5Dget_space(ds), H5Sclose);
      hsize_t dims[2] = {0, 0};
      if (H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, dims, nullptr) != 1 || dims[0] != t.count)
        tc.fail("values are not a flat array of count elements");
    }
    if (t.has_hist) {
      const id k = tc.dataset(tg, "hist_keys"), n = tc.dataset(tg, "hist_counts");
      hsize_t dk = 0, dn = 0;
      const id sk(H5Dget_space(k), H5Sclose), sn(H5Dget_space(n), H5Sclose);
      if (H5Sget_simple_extent_ndims(sk) != 1 || H5Sget_simple_extent_ndims(sn) != 1) tc.fail("histogram is not flat");
      H5Sget_simple_extent_dims(sk, &dk, nullptr);
      H5Sget_simple_extent_dims(sn, &dn, nullptr);
      if (dk != dn) tc.fail("hist_keys and hist_counts differ in length");
      if (dk > bucket_histogram::bucket_count) tc.fail("histogram has more buckets than exist");
    }
    s.tensors.push_back(std::move(t));
  }
  return s;
}

void trace_reader::values(const trace_step& s, const trace_tensor& t,
                          const std::function<void(std::span<const float>)>& f, std::size_t chunk) const {
  quiet_hdf5();
  const context c(path_ + ": step " + s.group + ", tensor " + t.name);
  if (!t.has_values) c.fail("no raw values recorded (histogram only)");
  const id ds = c.dataset(tensor_group(c, h_->steps, s, t), "values");
  const id file_space(H5Dget_space(ds), H5Sclose);
  // Slabs of whole storage chunks: a slab straddling two chunks would inflate each twice.
  {
    const id dcpl(H5Dget_create_plist(ds), H5Pclose);
    hsize_t stored = 0;
    if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 1, &stored) == 1 && stored > 0)
      chunk = std::max<std::size_t>(1, chunk / stored) * stored;
  }
  chunk = std::max<std::size_t>(chunk, 1);
  std::vector<float> out(std::min<std::uint64_t>(chunk, t.count));
  std::vector<std::uint16_t> u16;
  std::vector<std::uint8_t> u8;
  for (std::uint64_t lo = 0; lo < t.count; lo += chunk) {
    const hsize_t start = lo, n = std::min<std::uint64_t>(chunk, t.count - lo);
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
    const id mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
    herr_t st;
    const auto as_float = [&](const auto& bits, format_id fid) {
      decode(std::span(bits.data(), n), std::span<float>(out.data(), n), builtin(fid));
    };
    switch (t.dtype) {
      case trace_dtype::float32: st = H5Dread(ds, H5T_NATIVE_FLOAT, mem, file_space, H5P_DEFAULT, out.data()); break;
      case trace_dtype::float16:
      case trace_dtype::bfloat16:
        u16.resize(n);
        st = H5Dread(ds, H5T_NATIVE_UINT16, mem, file_space, H5P_DEFAULT, u16.data());
        if (st >= 0) as_float(u16, t.dtype == trace_dtype::float16 ? format_id::fp16 : format_id::bf16);
        break;
      default:
        u8.resize(n);
        st = H5Dread(ds, H5T_NATIVE_UINT8, mem, file_space, H5P_DEFAULT, u8.data());
        if (st >= 0) as_float(u8, t.dtype == trace_dtype::e4m3 ? format_id::e4m3 : format_id::e5m2);
    }
    if (st < 0) c.fail("cannot read values " + std::to_string(lo) + ".." + std::to_string(lo + n) + " (corrupt data?)");
    f(std::span<const float>(out.data(), n));
  }
}

namespace {

// How a values dataset's stored chunks decode without HDF5: a 1-D chunked dataset of the dtype's
// little-endian type whose filter pipeline is [shuffle][deflate] (the recorder's and the
// writer's). Anything else (other filters, Fletcher checksums, big-endian, unallocated chunks)
// is left to H5Dread.
struct raw_layout {
  std::uint64_t chunk = 0;  // elements per chunk
  int shuffle = -1, deflate = -1;  // pipeline positions (a chunk's filter mask bit), -1: absent
};

std::optional<raw_layout> raw_layout_of(hid_t ds, const trace_tensor& t) {
  if (t.count == 0) return std::nullopt;
  const id dcpl(H5Dget_create_plist(ds), H5Pclose);
  raw_layout l;
  hsize_t chunk = 0;
  if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_chunk(dcpl, 1, &chunk) != 1 || chunk == 0) return std::nullopt;
  l.chunk = chunk;
  // Each thread holds a chunk or two inflated: larger ones (HDF5 allows 4 GiB) go to H5Dread.
  if (chunk > (std::uint64_t{64} << 20) / storage(t.dtype).second) return std::nullopt;
  const auto pipeline = filters(dcpl);
  if (!pipeline || pipeline->size() > 2) return std::nullopt;
  for (int i = 0; i < int(pipeline->size()); ++i) {
    const H5Z_filter_t f = (*pipeline)[std::size_t(i)];
    if (f == H5Z_FILTER_SHUFFLE && i == 0) l.shuffle = i;
    else if (f == H5Z_FILTER_DEFLATE && l.deflate < 0) l.deflate = i;
    else return std::nullopt;
  }
  const id type(H5Dget_type(ds), H5Tclose);
  const std::size_t size = storage(t.dtype).second;
  if (H5Tget_size(type) != size) return std::nullopt;
  if (t.dtype == trace_dtype::float32 ? H5Tequal(type, H5T_IEEE_F32LE) <= 0
                                      : size > 1 && H5Tget_order(type) != H5T_ORDER_LE)
    return std::nullopt;
  if constexpr (std::endian::native != std::endian::little) return std::nullopt;
  const id space(H5Dget_space(ds), H5Sclose);
  hsize_t allocated = 0;
  if (H5Dget_num_chunks(ds, space, &allocated) < 0 || allocated != (t.count + chunk - 1) / chunk) return std::nullopt;
  return l;
}

// One stored chunk: whose, where, and its bytes as filtered.
struct stored_chunk {
  std::size_t tensor;
  std::uint64_t offset, count;  // elements
  unsigned mask;                // bit i: pipeline filter i was skipped for this chunk
  std::vector<std::uint8_t> bytes;
};

// Inflates and unshuffles a stored chunk and widens its `count` values to float32 in `out`.
// Touches no HDF5 state (any thread). False when the bytes do not decode to a whole chunk.
bool decode_chunk(const stored_chunk& c, const raw_layout& l, trace_dtype dt, std::vector<std::uint8_t>& inflated,
                  std::vector<std::uint8_t>& plain, std::vector<float>& out) {
  const std::size_t size = storage(dt).second, whole = l.chunk * size;
  const std::uint8_t* p = c.bytes.data();
  std::size_t n = c.bytes.size();
  if (l.deflate >= 0 && !(c.mask >> l.deflate & 1)) {
    inflated.resize(whole);
    uLongf len = whole;
    if (uncompress(inflated.data(), &len, p, n) != Z_OK) return false;
    p = inflated.data(), n = len;
  }
  if (n != whole) return false;
  if (l.shuffle >= 0 && !(c.mask >> l.shuffle & 1) && size > 1) {
    // HDF5's shuffle stores byte b of every element together: plane b holds element i's byte b at i.
    plain.resize(whole);
    const std::size_t e = l.chunk;
    if (size == 4)
      for (std::size_t i = 0; i < e; ++i)
        plain[4 * i] = p[i], plain[4 * i + 1] = p[e + i], plain[4 * i + 2] = p[2 * e + i], plain[4 * i + 3] = p[3 * e + i];
    else
      for (std::size_t i = 0; i < e; ++i) plain[2 * i] = p[i], plain[2 * i + 1] = p[e + i];
    p = plain.data();
  }
  out.resize(c.count);
  switch (dt) {
    case trace_dtype::float32: std::memcpy(out.data(), p, c.count * 4); break;
    case trace_dtype::float16:
    case trace_dtype::bfloat16: {
      std::vector<std::uint16_t> bits(c.count);
      std::memcpy(bits.data(), p, c.count * 2);
      decode(std::span<const std::uint16_t>(bits), std::span<float>(out),
             builtin(dt == trace_dtype::float16 ? format_id::fp16 : format_id::bf16));
      break;
    }
    default:
      decode(std::span<const std::uint8_t>(p, c.count), std::span<float>(out),
             builtin(dt == trace_dtype::e4m3 ? format_id::e4m3 : format_id::e5m2));
  }
  return true;
}

}  // namespace

bool trace_reader::decodes_chunks(const trace_step& s, const trace_tensor& t) const {
  quiet_hdf5();
  const context c(path_ + ": step " + s.group + ", tensor " + t.name);
  if (!t.has_values) return false;
  const id ds = c.dataset(tensor_group(c, h_->steps, s, t), "values");
  return raw_layout_of(ds, t).has_value();
}

void trace_reader::values_parallel(const trace_step& s, std::span<const trace_tensor* const> tensors,
                                   const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                                   int threads, std::size_t budget) const {
  quiet_hdf5();
  struct source {
    std::size_t index;
    const trace_tensor* t;
    id ds;
    raw_layout l;
  };
  std::vector<source> raw;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const trace_tensor& t = *tensors[i];
    const context c(path_ + ": step " + s.group + ", tensor " + t.name);
    if (!t.has_values) c.fail("no raw values recorded (histogram only)");
    id ds = c.dataset(tensor_group(c, h_->steps, s, t), "values");
    if (const auto l = raw_layout_of(ds, t)) {
      raw.push_back({i, &t, std::move(ds), *l});
      continue;
    }
    std::uint64_t at = 0;
    values(s, t, [&](std::span<const float> v) { f(i, at, v), at += v.size(); });
  }

  // This thread reads the stored chunks (one caller in HDF5 at a time) and hands each to an
  // OpenMP task that inflates, unshuffles, widens and passes it on, so reading overlaps decoding.
  // At most about `budget` stored bytes are in flight. The first failure, in reading order, is
  // the one thrown.
  struct scratch {
    std::vector<std::uint8_t> inflated, plain;
    std::vector<float> out;
  };
  const int nt = std::max(1, threads > 0 ? threads : omp_get_max_threads());
  std::vector<scratch> bufs(static_cast<std::size_t>(nt));
  std::mutex m;
  std::size_t first_seq = ~std::size_t{0};
  std::exception_ptr first;
  std::atomic<bool> stop{false};
  const auto failed = [&](std::size_t seq, std::exception_ptr e) {
    const std::lock_guard lock(m);
    if (seq < first_seq) first_seq = seq, first = std::move(e);
    stop = true;
  };
  const auto corrupt = [&](const source& src, std::uint64_t lo, std::uint64_t n) {
    return std::make_exception_ptr(trace_error(path_ + ": step " + s.group + ", tensor " + src.t->name +
                                               ": cannot read values " + std::to_string(lo) + ".." +
                                               std::to_string(lo + n) + " (corrupt data?)"));
  };
#pragma omp parallel num_threads(nt)
  {
    quiet_hdf5();  // every thread: whichever runs the single block calls libhdf5
#pragma omp single
  {
    std::size_t seq = 0, held = 0;
    try {  // nothing may leave an OpenMP region by an exception
      for (const source& src : raw) {
        const std::size_t whole = src.l.chunk * storage(src.t->dtype).second;
        // zlib's worst case (compressBound) and a little: a larger stored chunk is not ours to read.
        const std::size_t most_bytes = whole + whole / 1000 + 64;
        for (std::uint64_t lo = 0; lo < src.t->count && !stop; lo += src.l.chunk, ++seq) {
          auto ch = std::make_shared<stored_chunk>(
              stored_chunk{src.index, lo, std::min<std::uint64_t>(src.l.chunk, src.t->count - lo), 0, {}});
          const hsize_t at = lo;
          hsize_t nbytes = 0;
          std::uint32_t mask = 0;
          if (H5Dget_chunk_storage_size(src.ds, &at, &nbytes) < 0 || nbytes == 0 || nbytes > most_bytes ||
              (ch->bytes.resize(nbytes), H5Dread_chunk(src.ds, H5P_DEFAULT, &at, &mask, ch->bytes.data()) < 0)) {
            failed(seq, corrupt(src, lo, ch->count));
            break;
          }
          ch->mask = mask;
          held += nbytes;
          const source* from = &src;
#pragma omp task firstprivate(ch, seq, from) default(shared)
          if (!stop) {
            scratch& b = bufs[std::size_t(omp_get_thread_num())];
            try {
              if (decode_chunk(*ch, from->l, from->t->dtype, b.inflated, b.plain, b.out))
                f(ch->tensor, ch->offset, std::span<const float>(b.out));
              else
                failed(seq, corrupt(*from, ch->offset, ch->count));
            } catch (...) {
              failed(seq, std::current_exception());
            }
          }
          if (held >= budget) {
#pragma omp taskwait
            held = 0;
          }
        }
      }
    } catch (...) {
      failed(seq, std::current_exception());
    }
  }
  }
  if (first) std::rethrow_exception(first);
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> trace_reader::histogram(const trace_step& s,
                                                                            const trace_tensor& t) const {
  quiet_hdf5();
  const context c(path_ + ": step " + s.group + ", tensor " + t.name);
  if (!t.has_hist) c.fail("no histogram recorded");
  const id tg = tensor_group(c, h_->steps, s, t);
  const id k = c.dataset(tg, "hist_keys"), n = c.dataset(tg, "hist_counts");
  const id sk(H5Dget_space(k), H5Sclose);
  hsize_t len = 0;
  H5Sget_simple_extent_dims(sk, &len, nullptr);
  std::vector<std::uint32_t> keys(len);
  std::vector<std::uint64_t> counts(len);
  const id tk(H5Dget_type(k), H5Tclose), tn(H5Dget_type(n), H5Tclose);
  if (H5Tget_class(tk) != H5T_INTEGER || H5Tget_class(tn) != H5T_INTEGER) c.fail("histogram is not integers");
  if (len && (H5Dread(k, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, keys.data()) < 0 ||
              H5Dread(n, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts.data()) < 0))
    c.fail("cannot read the histogram (corrupt data?)");
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  long double total = 0;
  for (std::size_t i = 0; i < len; ++i) {
    if (keys[i] >= bucket_histogram::bucket_count) c.fail("histogram key " + std::to_string(keys[i]) + " out of range");
    if (i && keys[i] <= keys[i - 1]) c.fail("histogram keys are not sorted and unique");
    total += (long double)counts[i];
    out.emplace_back(keys[i], counts[i]);
  }
  if (total != (long double)t.count)
    c.fail("histogram counts sum to " + std::to_string((unsigned long long)total) + ", not count " + std::to_string(t.count));
  return out;
}

// ---------------------------------------------------------------------------------------------

// The writer follows docs/trace.md, "Writing safely" (the Python recorder's rules, checked at
// every write of a run by tests/record/test_crash_trace_writer.py):
//   1. each step is built as an anonymous group, filled, `complete` set, flushed; then linked
//      into /steps (H5Lcreate_hard) and flushed again;
//   2. /steps keeps its links in its header (compact storage), allocated up front for
//      max_steps links, so that the link is one in-place write;
//   3. file format bounds "earliest" (version-1 object headers: no checksums), every group
//      tracking link creation order (the condition for compact storage in that format);
//   4. fixed-length strings (in their object's header; not in the shared global heap);
//   5. the file kept pad_bytes longer than its end of allocation while flushing (HDF5 writes
//      the superblock with the new end before it extends the file).
// Plus the recorder's size tunings: B-tree rank 1 for chunk indexes, minimal dataset headers.

struct trace_writer::handle {
  id file, steps, step, tensors;
  int fd = -1;  // HDF5's own descriptor of the file (sec2 driver), for the padding of rule 5
  std::size_t max_steps = 0, written = 0;
  std::string link;  // the step being built: its name in /steps
  bool warned = false;
};

namespace {

constexpr off_t pad_bytes = off_t{4} << 20;  // a sparse hole: no disk space

void write_attr(hid_t obj, const char* name, hid_t type, const void* v, hsize_t n = 0, bool array = false) {
  const id sp(array ? H5Screate_simple(1, &n, nullptr) : H5Screate(H5S_SCALAR), H5Sclose);
  const id a(H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.ok() || H5Awrite(a, type, v) < 0) throw trace_error(std::string("cannot write attribute ") + name);
}

// Rule 4: a fixed-length UTF-8 string, null-padded (as h5py writes them).
void write_text(hid_t obj, const char* name, const std::string& s) {
  const id t(H5Tcopy(H5T_C_S1), H5Tclose);
  std::string buf = s;
  buf.resize(std::max<std::size_t>(s.size(), 1), '\0');
  H5Tset_size(t, buf.size());
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  H5Tset_cset(t, H5T_CSET_UTF8);
  write_attr(obj, name, t, buf.data());
}

// A new group (name null: anonymous) whose links iterate in creation order, with compact link
// storage (never converted to a heap + B-tree) allocated up front for `links` links of names
// about `name_len` long.
id make_group(hid_t loc, const char* name, std::size_t links, std::size_t name_len) {
  const id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_link_phase_change(gcpl, 65535, 65535);
  H5Pset_est_link_info(gcpl, unsigned(std::clamp<std::size_t>(links, 1, 65535)),
                       unsigned(std::clamp<std::size_t>(name_len, 1, 65535)));
  return id(name ? H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT) : H5Gcreate_anon(loc, gcpl, H5P_DEFAULT),
            H5Gclose);
}

template <class T>
void write_dataset(hid_t loc, const char* name, hid_t file_type, hid_t mem_type, std::span<const T> v) {
  const hsize_t n = v.size();
  const id sp(H5Screate_simple(1, &n, nullptr), H5Sclose);
  const id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl, 0);  // as h5py: no modification times, the same bytes each run
  if (n > 0) {
    const hsize_t chunk = std::min<hsize_t>(n, hsize_t{1} << 20);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
  }
  const id d(H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  if (!d.ok() || (n > 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0))
    throw trace_error(std::string("cannot write dataset ") + name);
}

// Rule 5: H5Fflush with the file kept pad_bytes longer than its end of allocation meanwhile,
// then trimmed back (the Python recorder's Recorder._flush).
void flush(hid_t file, int fd, const std::string& path) {
  hsize_t size = 0;
  struct stat st {};
  if (H5Fget_filesize(file, &size) < 0 || ::fstat(fd, &st) != 0) throw trace_error(path + ": cannot stat");
  if (::ftruncate(fd, std::max<off_t>(st.st_size, off_t(size) + pad_bytes)) != 0)
    throw trace_error(path + ": cannot extend the file (" + std::strerror(errno) + ")");
  if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) throw trace_error(path + ": cannot flush");
  if (H5Fget_filesize(file, &size) < 0 || ::ftruncate(fd, off_t(size)) != 0)
    throw trace_error(path + ": cannot trim the file after flushing");
}

}  // namespace

trace_writer::trace_writer(const std::string& path, const std::string& producer, const std::string& model,
                           bool overwrite, std::size_t max_steps)
    : path_(path), h_(std::make_unique<handle>()) {
  quiet_hdf5();
  if (max_steps < 1 || max_steps > 65535)
    throw trace_error(path + ": max_steps must be in 1..65535, not " + std::to_string(max_steps));
  h_->max_steps = max_steps;
  const id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose), fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18);  // rule 3
  // Chunk index B-trees of rank 2, not 1: under rank 1 libhdf5 1.10.8 writes a dataset of more
  // than 256 chunks that it cannot read back, and fails on ~1000 (docs/trace.md).
  H5Pset_istore_k(fcpl, 2);
  h_->file = id(H5Fcreate(path.c_str(), overwrite ? H5F_ACC_TRUNC : H5F_ACC_EXCL, fcpl, fapl), H5Fclose);
  if (!h_->file.ok()) throw trace_error(path + ": cannot create (exists, or the directory is not writable)");
#if H5_VERSION_GE(1, 10, 5)
  H5Fset_dset_no_attrs_hint(h_->file, 1);
#endif
  void* vfd = nullptr;
  if (H5Fget_vfd_handle(h_->file, H5P_DEFAULT, &vfd) < 0 || !vfd)
    throw trace_error(path + ": cannot get the file descriptor");
  h_->fd = *static_cast<int*>(vfd);
  const std::int32_t v = trace_version;
  write_attr(h_->file, "fpscope_trace_version", H5T_STD_I32LE, &v);
  write_text(h_->file, "producer", producer);
  write_text(h_->file, "model", model);
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  write_text(h_->file, "created", buf);
  h_->steps = make_group(h_->file, "steps", max_steps, 8);  // rule 2
  if (!h_->steps.ok()) throw trace_error(path + ": cannot create /steps");
  flush(h_->file, h_->fd, path_);
}

// An unfinished step is an anonymous group: closing it frees it, nothing reachable changes.
trace_writer::~trace_writer() = default;

std::size_t trace_writer::steps_written() const { return h_->written; }
std::size_t trace_writer::max_steps() const { return h_->max_steps; }

void trace_writer::begin_step(std::int64_t step, double loss, double lr, double loss_scale) {
  quiet_hdf5();
  char name[32];
  std::snprintf(name, sizeof name, "%08lld", static_cast<long long>(step));
  h_->tensors = id();
  h_->step = id();
  if (H5Lexists(h_->steps, name, H5P_DEFAULT) != 0)
    throw trace_error(path_ + ": cannot create step " + name + " (already written?)");
  if (h_->written >= h_->max_steps && !h_->warned) {
    h_->warned = true;
    std::fprintf(stderr,
                 "fpscope::trace_writer: %s holds max_steps=%zu steps; appending more is no longer crash-safe "
                 "(pass a larger max_steps)\n",
                 path_.c_str(), h_->max_steps);
  }
  // Rule 1: the step, whole, as an unlinked group: nothing a reader can reach changes.
  h_->step = make_group(h_->file, nullptr, 1, 8);
  if (!h_->step.ok()) throw trace_error(path_ + ": cannot create step " + name);
  h_->link = name;
  write_attr(h_->step, "step", H5T_STD_I64LE, &step);
  write_attr(h_->step, "loss", H5T_IEEE_F64LE, &loss);
  write_attr(h_->step, "lr", H5T_IEEE_F64LE, &lr);
  write_attr(h_->step, "loss_scale", H5T_IEEE_F64LE, &loss_scale);
  // The tensor count is not known yet: room for 8 in the header, more in continuation chunks
  // (harmless: the step is not reachable until it is whole and flushed).
  h_->tensors = make_group(h_->step, "tensors", 8, 16);
  if (!h_->tensors.ok()) throw trace_error(path_ + ": cannot create step " + name + "'s tensors");
}

void trace_writer::add(const std::string& name, std::span<const float> values, std::vector<std::uint64_t> shape,
                       bool raw, bool hist) {
  quiet_hdf5();
  if (!h_->tensors.ok()) throw trace_error(path_ + ": add() outside a step");
  const std::string link = escape(name);
  if (H5Lexists(h_->tensors, link.c_str(), H5P_DEFAULT) != 0)
    throw trace_error(path_ + ": cannot create tensor " + name + " (a duplicate name?)");
  const id g = make_group(h_->tensors, link.c_str(), 3, 11);
  if (!g.ok()) throw trace_error(path_ + ": cannot create tensor " + name);
  write_text(g, "dtype", "float32");
  write_attr(g, "shape", H5T_STD_I64LE, shape.data(), shape.size(), true);
  std::uint64_t count = values.size(), zeros = 0, infs = 0, nans = 0;
  double amax = 0;
  for (const float x : values) {
    zeros += x == 0;
    infs += std::isinf(x);
    nans += std::isnan(x);
    if (std::isfinite(x)) amax = std::max(amax, double(std::fabs(x)));
  }
  write_attr(g, "count", H5T_STD_U64LE, &count);
  write_attr(g, "amax", H5T_IEEE_F64LE, &amax);
  write_attr(g, "zeros", H5T_STD_U64LE, &zeros);
  write_attr(g, "infs", H5T_STD_U64LE, &infs);
  write_attr(g, "nans", H5T_STD_U64LE, &nans);
  if (raw) write_dataset(g, "values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, values);
  if (hist) {
    bucket_histogram b;
    b.add(values, 1);
    std::vector<std::uint32_t> keys;
    std::vector<std::uint64_t> counts;
    for (const auto& [k, n] : b.sparse()) keys.push_back(k), counts.push_back(n);
    write_dataset(g, "hist_keys", H5T_STD_U32LE, H5T_NATIVE_UINT32, std::span<const std::uint32_t>(keys));
    write_dataset(g, "hist_counts", H5T_STD_U64LE, H5T_NATIVE_UINT64, std::span<const std::uint64_t>(counts));
  }
}

void trace_writer::end_step() {
  quiet_hdf5();
  if (!h_->step.ok()) throw trace_error(path_ + ": end_step() outside a step");
  const std::int8_t one = 1;
  write_attr(h_->step, "complete", H5T_STD_I8LE, &one);  // docs/trace.md: written last, the step is whole
  h_->tensors = id();
  flush(h_->file, h_->fd, path_);
  // Rule 2: one in-place write of /steps' header (its link storage is preallocated).
  const id step = std::move(h_->step);
  if (H5Lcreate_hard(step, ".", h_->steps, h_->link.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    throw trace_error(path_ + ": cannot link step " + h_->link);
  flush(h_->file, h_->fd, path_);
  ++h_->written;
}

}  // namespace fpscope
