// The trace reader: opens and checks a trace (docs/trace.md), reads steps' metadata, values and
// histograms. The stored chunks values_parallel decodes itself are trace_chunks.cpp's.
#include <hdf5.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/block_stats.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/input.hpp"
#include "fpscope/options.hpp"
#include "fpscope/trace.hpp"
#include "trace_chunks.hpp"
#include "trace_hdf5.hpp"

namespace fpscope {
using namespace trace_detail;

namespace {

// The most a stored chunk can expand through the filters the reader accepts: deflate's limit
// (zlib's format cannot inflate more than 1032:1, "zlib technical details"), plus slack for
// headers; shuffle and fletcher32 do not shrink data.
constexpr std::uint64_t max_expansion = 1032;

// Why the bytes stored for a dataset cannot be its declared contents, or "" when they can. Every
// allocation and loop the reader makes is bounded by what this admits: a dataset's declared size
// must be stored (every chunk allocated: an unwritten chunk would read as fill values, and a
// 22 KB file declaring 2^40 of them took hours to read), within the file's actual size (fstat,
// not the superblock's claim, which HDF5's sec2 driver pads with zeros), each filtered chunk
// no smaller than deflate can inflate to its size, and the chunks together no larger than the
// file. libhdf5 1.10 checks none of this; it also copies a whole chunk (or the whole compact
// data) out of a shorter buffer (an over-read the fuzzer found under ASan).
std::string storage_problem(hid_t ds, hid_t dcpl) {
  const id type(H5Dget_type(ds), H5Tclose), space(H5Dget_space(ds), H5Sclose);
  const std::size_t size = H5Tget_size(type);
  const hssize_t points = H5Sget_simple_extent_npoints(space);
  if (size == 0 || points < 0) return "unreadable type or shape";
  std::uint64_t declared = 0;
  if (__builtin_mul_overflow(std::uint64_t(points), std::uint64_t(size), &declared)) return "absurd size";
  // The file as it is (sec2, the only driver the reader opens with): its size and where HDF5's
  // address 0 lies in it (the user block).
  std::optional<std::uint64_t> file_end;
  std::uint64_t base = 0;
  {
    const id file(H5Iget_file_id(ds), H5Fclose);
    struct stat st {};
    if (const auto f = file.ok() ? stored_file_of(file) : std::nullopt; f && ::fstat(f->fd, &st) == 0)
      file_end = std::uint64_t(st.st_size), base = f->base;
  }
  const auto stored = [&](std::uint64_t n) { return std::to_string(n) + " bytes stored"; };
  const std::string wants = "declares " + std::to_string(points) + " values (" + std::to_string(declared) + " bytes)";
  const auto outside = [&](haddr_t addr, std::uint64_t n) {
    std::uint64_t end = 0;
    return file_end && (__builtin_add_overflow(std::uint64_t(addr), base, &end) ||
                        __builtin_add_overflow(end, n, &end) || end > *file_end);
  };
  switch (H5Pget_layout(dcpl)) {
    case H5D_COMPACT: {
      const hsize_t have = H5Dget_storage_size(ds);
      return have >= declared ? "" : wants + " but has " + stored(have);
    }
    case H5D_CONTIGUOUS: {
      if (declared == 0) return "";
      const haddr_t addr = H5Dget_offset(ds);
      if (addr == HADDR_UNDEF) return wants + " but stores none of them";
      if (outside(addr, declared))
        return wants + " at offset " + std::to_string(addr) + ", beyond the file's " + std::to_string(*file_end) +
               " bytes stored";
      return "";
    }
    case H5D_CHUNKED: {
      hsize_t chunk = 0, len = 0;
      if (H5Sget_simple_extent_ndims(space) != 1) return "";  // not a trace's: refused elsewhere
      if (H5Pget_chunk(dcpl, 1, &chunk) != 1 || chunk == 0) return "unreadable chunk size";
      H5Sget_simple_extent_dims(space, &len, nullptr);
      const auto pipeline = filters(dcpl);
      if (!pipeline) return "unreadable filter pipeline";
      bool filtered = false;
      for (const H5Z_filter_t f : *pipeline) {
        if (f != H5Z_FILTER_SHUFFLE && f != H5Z_FILTER_DEFLATE && f != H5Z_FILTER_FLETCHER32)
          return "uses HDF5 filter " + std::to_string(f) + " (fpscope reads shuffle, deflate and fletcher32 only)";
        filtered = true;
      }
      // Every chunk stored, counted from the chunk index (whose size the file bounds) before
      // any loop over the chunks the extent declares.
      const std::uint64_t needed = len / chunk + (len % chunk != 0);
      hsize_t allocated = 0;
      if (H5Dget_num_chunks(ds, space, &allocated) < 0) return "unreadable chunk index";
      if (allocated != needed)
        return wants + " in " + std::to_string(needed) + " chunks, but " + std::to_string(allocated) +
               " are stored";
      const std::uint64_t whole = std::uint64_t(chunk) * size;
      std::uint64_t total = 0;
      for (hsize_t at = 0; at < len; at += chunk) {
        // By coordinate: the size the chunk index records (H5Dget_chunk_storage_size reports
        // the chunk's nominal size for unfiltered chunks, whatever is stored).
        unsigned mask = 0;
        haddr_t addr = 0;
        hsize_t have = 0;
        if (H5Dget_chunk_info_by_coord(ds, &at, &mask, &addr, &have) < 0) return "unreadable chunk index";
        if (addr == HADDR_UNDEF) return wants + " but its chunk at " + std::to_string(at) + " is not stored";
        if (filtered ? have == 0 || whole / max_expansion > have : have != whole)
          return "chunk at " + std::to_string(at) + " of " + std::to_string(whole) + " bytes has " + stored(have);
        if (outside(addr, have)) return "chunk at " + std::to_string(at) + " lies beyond the end of the file";
        total += have;
      }
      if (file_end && total > *file_end)
        return wants + " but its chunks add up to " + std::to_string(total) + " bytes, more than the file's " +
               std::to_string(*file_end);
      return "";
    }
    default: return "";
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
    if (const std::string why = storage_problem(d, dcpl); !why.empty()) fail("'" + name + "' is corrupt: " + why);
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

// Bounds on the multi-rank attributes (docs/trace.md, "Multi-rank traces"): generous for any real
// run, small enough that nothing built from them (a coverage map, a table of ranks) is absurd.
constexpr std::int64_t max_world = std::int64_t{1} << 24;
constexpr std::uint64_t max_split = std::uint64_t{1} << 20;

// The root's rank layout, or nullopt when the file has none (minor version 0, or a single process).
std::optional<trace_layout> read_layout(const context& c, hid_t root) {
  const bool has_rank = H5Aexists(root, "rank") > 0, has_world = H5Aexists(root, "world_size") > 0;
  const char* coords[][2] = {{"dp_rank", "dp_size"}, {"tp_rank", "tp_size"}, {"pp_rank", "pp_size"}};
  bool any_coord = false;
  for (const auto& [r, n] : coords) any_coord = any_coord || H5Aexists(root, r) > 0 || H5Aexists(root, n) > 0;
  if (!has_rank && !has_world && !any_coord) return std::nullopt;
  if (!has_rank || !has_world) c.fail("@rank and @world_size come together (one is missing)");
  trace_layout l;
  l.world_size = c.number<std::int64_t>(root, "world_size", H5T_NATIVE_INT64);
  l.rank = c.number<std::int64_t>(root, "rank", H5T_NATIVE_INT64);
  if (l.world_size < 1 || l.world_size > max_world)
    c.fail("@world_size " + std::to_string(l.world_size) + " is not in 1.." + std::to_string(max_world));
  if (l.rank < 0 || l.rank >= l.world_size)
    c.fail("@rank " + std::to_string(l.rank) + " is not in 0.." + std::to_string(l.world_size - 1));
  std::optional<trace_layout::coord>* slots[] = {&l.dp, &l.tp, &l.pp};
  std::int64_t product = 1;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto [r, n] = coords[i];
    const bool hr = H5Aexists(root, r) > 0, hn = H5Aexists(root, n) > 0;
    if (!hr && !hn) continue;
    if (!hr || !hn) c.fail(std::string("@") + r + " and @" + n + " come together (one is missing)");
    trace_layout::coord k{c.number<std::int64_t>(root, r, H5T_NATIVE_INT64), c.number<std::int64_t>(root, n, H5T_NATIVE_INT64)};
    if (k.size < 1 || k.size > l.world_size)
      c.fail(std::string("@") + n + " " + std::to_string(k.size) + " is not in 1..@world_size " + std::to_string(l.world_size));
    if (k.rank < 0 || k.rank >= k.size)
      c.fail(std::string("@") + r + " " + std::to_string(k.rank) + " is not in 0.." + std::to_string(k.size - 1));
    product *= k.size;  // each factor <= world_size (2^24) and the product so far too: no overflow
    if (product > l.world_size || l.world_size % product != 0)
      c.fail("the data/tensor/pipeline-parallel sizes do not divide @world_size " + std::to_string(l.world_size));
    *slots[i] = k;
  }
  return l;
}

// A list of unsigned integers (a shape), at most 32 of them.
std::vector<std::uint64_t> dims_of(const context& c, hid_t obj, const char* name) {
  const id a = c.attribute(obj, name);
  const hssize_t n = c.elements(a);
  if (n < 0 || n > 32) c.fail(std::string(name) + " has an absurd rank");
  std::vector<std::uint64_t> out(std::size_t(n), 0);
  std::vector<std::int64_t> raw(std::size_t(n), 0);
  const id at(H5Aget_type(a), H5Tclose);
  if (n > 0 && (H5Tget_class(at) != H5T_INTEGER || H5Aread(a, H5T_NATIVE_INT64, raw.data()) < 0))
    c.fail(std::string(name) + " is not a list of integers");
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] < 0) c.fail(std::string(name) + " has a negative dimension");
    out[i] = std::uint64_t(raw[i]);
  }
  return out;
}

// A tensor's shard description, checked against the tensor's own shape and count; nullopt when
// it has none. Every attribute of a description without the others is an error: a reader must
// never take a part of a tensor for the whole.
std::optional<trace_shard> read_shard(const context& c, hid_t tg, const trace_tensor& t) {
  const char* flat[] = {"shard_offset", "shard_length"};
  const char* split[] = {"split_dim", "split_index", "split_count"};
  const auto has = [&](const char* n) { return H5Aexists(tg, n) > 0; };
  int nflat = 0, nsplit = 0;
  for (const char* n : flat) nflat += has(n);
  for (const char* n : split) nsplit += has(n);
  const bool named = has("logical_name"), shaped = has("logical_shape");
  if (!named && !shaped && !nflat && !nsplit) return std::nullopt;
  if (!named || !shaped) c.fail("a shard description needs both @logical_name and @logical_shape");
  if ((nflat != 0) == (nsplit != 0) || (nflat && nflat != 2) || (nsplit && nsplit != 3))
    c.fail("a shard description is either @shard_offset and @shard_length, or @split_dim, @split_index and @split_count");
  trace_shard sh;
  sh.logical_name = c.text(tg, "logical_name");
  if (sh.logical_name.empty()) c.fail("@logical_name is empty");
  sh.logical_shape = dims_of(c, tg, "logical_shape");
  long double total = 1;
  for (const auto e : sh.logical_shape) total *= (long double)e;
  if (total > (long double)(std::uint64_t{1} << 40)) c.fail("@logical_shape is absurdly large");
  const std::uint64_t logical = std::uint64_t(total);
  const std::string whole = " of the logical tensor's " + std::to_string(logical) + " elements";
  if (nflat) {
    sh.how = trace_shard::kind::flat;
    sh.offset = c.count(tg, "shard_offset");
    const std::uint64_t length = c.count(tg, "shard_length");
    if (length != t.count) c.fail("@shard_length " + std::to_string(length) + " is not the tensor's count " + std::to_string(t.count));
    if (sh.offset > logical || length > logical - sh.offset)
      c.fail("shard " + std::to_string(sh.offset) + "+" + std::to_string(length) + " lies outside" + whole);
    return sh;
  }
  sh.how = trace_shard::kind::split;
  const std::uint64_t dim = c.count(tg, "split_dim"), index = c.count(tg, "split_index"), parts = c.count(tg, "split_count");
  if (dim >= sh.logical_shape.size())
    c.fail("@split_dim " + std::to_string(dim) + " is not a dimension of @logical_shape (rank " +
           std::to_string(sh.logical_shape.size()) + ")");
  if (parts < 1 || parts > max_split) c.fail("@split_count " + std::to_string(parts) + " is not in 1.." + std::to_string(max_split));
  if (index >= parts) c.fail("@split_index " + std::to_string(index) + " is not in 0.." + std::to_string(parts - 1));
  if (sh.logical_shape[dim] % parts != 0)
    c.fail("@split_count " + std::to_string(parts) + " does not divide dimension " + std::to_string(dim) + " (" +
           std::to_string(sh.logical_shape[dim]) + ") of @logical_shape");
  std::vector<std::uint64_t> expect = sh.logical_shape;
  expect[dim] /= parts;
  if (t.shape != expect) c.fail("the tensor's shape is not part " + std::to_string(index) + " of " + std::to_string(parts) +
                                " of @logical_shape along dimension " + std::to_string(dim));
  sh.dim = std::uint32_t(dim), sh.index = std::uint32_t(index), sh.parts = std::uint32_t(parts);
  return sh;
}

// Bounds on the GEMM operand attributes (docs/trace.md, "GEMM operands").
constexpr std::size_t max_layer_name = 4096;

// A tensor's GEMM operand description, checked against its own shape and count; nullopt when it
// has none. The three attributes come together: a role without its layer or 2-D shape would be
// quantized along a guessed axis.
std::optional<trace_operand> read_operand(const context& c, hid_t tg, const trace_tensor& t) {
  const auto has = [&](const char* n) { return H5Aexists(tg, n) > 0; };
  const int n = int(has("role")) + int(has("layer")) + int(has("gemm_shape"));
  if (n == 0) return std::nullopt;
  if (n != 3) c.fail("a GEMM operand description needs @role, @layer and @gemm_shape together");
  trace_operand op;
  const std::string role = c.text(tg, "role");
  const auto r = find_trace_role(role);
  if (!r) c.fail("@role '" + role + "' is not input, weight, grad or wgrad");
  op.role = *r;
  op.layer = c.text(tg, "layer");
  if (op.layer.empty()) c.fail("@layer is empty");
  if (op.layer.size() > max_layer_name) c.fail("@layer is absurdly long");
  const auto g = dims_of(c, tg, "gemm_shape");
  if (g.size() != 2) c.fail("@gemm_shape has " + std::to_string(g.size()) + " dimensions, not 2 (rows, cols)");
  op.rows = g[0], op.cols = g[1];
  std::uint64_t product = 0;
  if (__builtin_mul_overflow(op.rows, op.cols, &product) || product != t.count)
    c.fail("@gemm_shape " + std::to_string(op.rows) + " x " + std::to_string(op.cols) + " does not hold the tensor's " +
           std::to_string(t.count) + " elements");
  if (t.shape.empty() ? op.cols != 1 : op.cols != t.shape.back())
    c.fail("@gemm_shape's columns (" + std::to_string(op.cols) + ") are not the last dimension of @shape");
  return op;
}

// Within a step, a layer's operands: each role once, and shapes a Linear's GEMMs could have
// multiplied (fprop X W^T, dgrad dY W, wgrad dY^T X). Errors name the step and the tensor.
void check_layers(const context& c, const trace_step& s) {
  struct seen {
    const trace_tensor* by_role[4] = {};
  };
  std::vector<std::pair<std::string, seen>> layers;  // in order; a step has few layers
  for (const auto& t : s.tensors) {
    if (!t.operand) continue;
    auto it = std::find_if(layers.begin(), layers.end(), [&](const auto& l) { return l.first == t.operand->layer; });
    if (it == layers.end()) it = layers.insert(layers.end(), {t.operand->layer, seen{}});
    auto& slot = it->second.by_role[std::size_t(t.operand->role)];
    if (slot)
      c.fail("tensor " + t.name + ": layer '" + t.operand->layer + "' has a second " + std::string(name(t.operand->role)) +
             " operand (the first: " + slot->name + ")");
    slot = &t;
  }
  const auto shape = [](const trace_tensor* t) {
    return std::to_string(t->operand->rows) + " x " + std::to_string(t->operand->cols);
  };
  for (const auto& [layer, l] : layers) {
    const auto* x = l.by_role[0];
    const auto* w = l.by_role[1];
    const auto* dy = l.by_role[2];
    const auto* dw = l.by_role[3];
    const auto clash = [&](const trace_tensor* a, const trace_tensor* b, const char* rule) {
      c.fail("layer '" + layer + "': " + a->name + " (" + shape(a) + ") and " + b->name + " (" + shape(b) +
             ") cannot be one Linear's operands (" + rule + ")");
    };
    if (x && w && x->operand->cols != w->operand->cols) clash(x, w, "X cols = W cols");
    if (dy && w && dy->operand->cols != w->operand->rows) clash(dy, w, "dY cols = W rows");
    if (x && dy && x->operand->rows != dy->operand->rows) clash(x, dy, "X rows = dY rows");
    if (dw && w && (dw->operand->rows != w->operand->rows || dw->operand->cols != w->operand->cols))
      clash(dw, w, "dW shape = W shape");
  }
}

}  // namespace

std::string_view name(trace_role r) {
  switch (r) {
    case trace_role::input: return "input";
    case trace_role::weight: return "weight";
    case trace_role::grad: return "grad";
    case trace_role::wgrad: return "wgrad";
  }
  return "?";
}

std::optional<trace_role> find_trace_role(std::string_view s) {
  for (int i = 0; i <= int(trace_role::wgrad); ++i)
    if (name(trace_role(i)) == s) return trace_role(i);
  return std::nullopt;
}

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
  std::optional<stored_file> bytes;  // where values_parallel reads stored chunks itself

  // The layout of tensor t's values dataset ds, if values_parallel decodes its chunks itself.
  std::optional<raw_layout> decoded(hid_t ds, const trace_tensor& t) const {
    return bytes ? raw_layout_of(ds, t) : std::nullopt;
  }
};

trace_reader::trace_reader(const std::string& path) : path_(path), h_(std::make_unique<handle>()) {
  quiet_hdf5();
  const context c(path);
  std::optional<input_file> in;
  try {
    in.emplace(path);  // a FIFO never blocks us, and only a regular file is a trace
    if (in->size() == 0) c.fail("not an HDF5 file (empty file)");
  } catch (const input_error& e) {
    throw trace_error(e.what());
  }
  // libhdf5 opens by name. Opening `path` again would look it up again, and a FIFO renamed over
  // it since the check above would block that open forever (tests/hostile/test_in_trace_race.py):
  // hand it the checked file's own /proc link, and check that it opened that file.
  // (libhdf5 1.10 resolves a symbolic link's real path and refuses a file that has none: one
  // renamed over and so deleted cannot be opened this way, and is reported as replaced.)
  const std::string name = in->reopen_name();
  const auto replaced = [&] {
    if (!in->path_names_it()) c.fail("the file was replaced while it was being opened");
  };
  if (H5Fis_hdf5(name.c_str()) <= 0) replaced(), c.fail("not an HDF5 file");
  const id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  h_->file = id(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!h_->file.ok()) replaced(), c.fail("cannot open (truncated or corrupt HDF5 file)");
  h_->bytes = stored_file_of(h_->file);
  if (h_->bytes && !in->same_file(h_->bytes->fd)) c.fail("the file was replaced while it was being opened");
  in.reset();  // libhdf5 holds its own descriptor
  read_root();
}

trace_reader::trace_reader(std::string_view image, const std::string& name) : path_(name), h_(std::make_unique<handle>()) {
  quiet_hdf5();
  const context c(name);
  if (image.empty()) c.fail("not an HDF5 file (empty image)");
  // The core driver over a copy of the image, never backed by a file (the name is only a label).
  const id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (H5Pset_fapl_core(fapl, std::size_t{1} << 20, 0) < 0 ||
      H5Pset_file_image(fapl, const_cast<char*>(image.data()), image.size()) < 0)
    c.fail("cannot hold the trace's image");
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  h_->file = id(H5Fopen(name.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!h_->file.ok()) c.fail("cannot open (a truncated or corrupt HDF5 image)");
  read_root();
}

void trace_reader::read_root() {
  const std::string& path = path_;
  const context c(path);
  const auto version = c.number<std::int64_t>(h_->file, "fpscope_trace_version", H5T_NATIVE_INT64);
  if (version != trace_version)
    c.fail("trace format version " + std::to_string(version) + " is not supported (this fpscope reads version " +
           std::to_string(trace_version) + ")");
  producer_ = c.text(h_->file, "producer");
  model_ = c.text(h_->file, "model");
  if (H5Aexists(h_->file, "fpscope_trace_minor") > 0) {
    const auto minor = c.number<std::int64_t>(h_->file, "fpscope_trace_minor", H5T_NATIVE_INT64);
    if (minor < 0 || minor > 1000) c.fail("@fpscope_trace_minor " + std::to_string(minor) + " is not a version");
    minor_ = int(minor);
  }
  layout_ = read_layout(c, h_->file);
  h_->steps = c.group(h_->file, "steps");
  // A last step the writer did not finish (no `complete` attribute, or one that is not 1) is
  // reported apart. The complete steps must be what both writers make (docs/trace.md): each
  // group named by its @step, zero-padded to 8 digits, the steps in increasing order. Anything
  // else (steps out of order or repeated, a negative @step, a name that disagrees) would be
  // replayed in an order no training run had: an error naming the step.
  const auto names = children(h_->steps);
  std::optional<std::int64_t> previous;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const context sc(path + ": step " + names[i]);
    const id g = sc.group(h_->steps, names[i]);
    std::string unfinished;
    if (H5Aexists(g, "complete") <= 0) unfinished = "no 'complete' attribute";
    else if (const auto v = sc.number<std::int64_t>(g, "complete", H5T_NATIVE_INT64); v != 1)
      unfinished = "'complete' is " + std::to_string(v) + ", not 1";
    if (unfinished.empty()) {
      const auto step = sc.number<std::int64_t>(g, "step", H5T_NATIVE_INT64);
      if (step < 0) sc.fail("@step " + std::to_string(step) + " is negative");
      char expected[32];
      std::snprintf(expected, sizeof expected, "%08lld", static_cast<long long>(step));
      if (names[i] != expected)
        sc.fail("the group's name disagrees with its @step " + std::to_string(step) + " (a step's group is named " +
                expected + ")");
      if (previous && step == *previous) sc.fail("@step " + std::to_string(step) + " is recorded twice");
      if (previous && step < *previous)
        sc.fail("@step " + std::to_string(step) + " comes after step " + std::to_string(*previous) +
                ": steps out of order");
      previous = step;
      steps_.push_back(names[i]);
    } else if (i + 1 == names.size()) {
      incomplete_.push_back(sc.where() + ": not finished by its writer (" + unfinished + ")");
    } else {
      sc.fail("not finished by its writer (" + unfinished + "), yet later steps follow: corrupt file");
    }
  }
}

trace_reader::~trace_reader() = default;

std::int64_t trace_reader::step_number(std::size_t i) const {
  if (i >= steps_.size()) throw trace_error(path_ + ": no step " + std::to_string(i));
  return std::stoll(steps_[i]);
}

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
    t.shard = read_shard(tc, tg, t);
    t.operand = read_operand(tc, tg, t);
    t.has_values = H5Lexists(tg, "values", H5P_DEFAULT) > 0;
    t.has_hist = H5Lexists(tg, "hist_keys", H5P_DEFAULT) > 0;
    t.has_block_stats = H5Lexists(tg, "bstats_keys", H5P_DEFAULT) > 0;
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
  check_layers(c, s);
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

bool trace_reader::decodes_chunks(const trace_step& s, const trace_tensor& t) const {
  quiet_hdf5();
  const context c(path_ + ": step " + s.group + ", tensor " + t.name);
  if (!t.has_values) return false;
  const id ds = c.dataset(tensor_group(c, h_->steps, s, t), "values");
  return h_->decoded(ds, t).has_value();
}

void trace_reader::values_parallel(const trace_step& s, std::span<const trace_tensor* const> tensors,
                                   const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                                   int threads, std::size_t /*budget: unused (trace.hpp)*/) const {
  quiet_hdf5();
  std::vector<chunk_source> raw;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const trace_tensor& t = *tensors[i];
    const context c(path_ + ": step " + s.group + ", tensor " + t.name);
    if (!t.has_values) c.fail("no raw values recorded (histogram only)");
    id ds = c.dataset(tensor_group(c, h_->steps, s, t), "values");
    if (const auto l = h_->decoded(ds, t)) {
      raw.push_back({i, &t, std::move(ds), *l, c.where()});
      continue;
    }
    std::uint64_t at = 0;
    values(s, t, [&](std::span<const float> v) { f(i, at, v), at += v.size(); });
  }
  if (!raw.empty()) read_stored_chunks(*h_->bytes, raw, f, threads);
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

operand_block_stats trace_reader::block_stats(const trace_step& s, const trace_tensor& t) const {
  quiet_hdf5();
  const context c(path_ + ": step " + s.group + ", tensor " + t.name);
  if (!t.has_block_stats) c.fail("no block statistics recorded");
  const id tg = tensor_group(c, h_->steps, s, t);
  // One flat unsigned integer dataset of at most `limit` elements.
  auto read = [&]<class T>(const char* name, std::vector<T>& out, hsize_t limit) {
    const id d = c.dataset(tg, name);
    const id ty(H5Dget_type(d), H5Tclose), sp(H5Dget_space(d), H5Sclose);
    if (H5Tget_class(ty) != H5T_INTEGER || H5Tget_sign(ty) != H5T_SGN_NONE || H5Tget_size(ty) != sizeof(T))
      c.fail(std::string(name) + " is not uint" + std::to_string(8 * sizeof(T)));
    hsize_t n = 0;
    if (H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &n, nullptr) != 1 || n > limit)
      c.fail(std::string(name) + " is not a flat array of at most " + std::to_string(limit) + " elements");
    out.resize(n);
    if (n && H5Dread(d, sizeof(T) == 4 ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
      c.fail(std::string("cannot read ") + name + " (corrupt data?)");
  };
  block_stats_arrays a;
  read("bstats_shape", a.shape, 2);
  read("bstats_thresholds", a.thresholds, 1023);
  read("bstats_geometry", a.geometry, 128);
  read("bstats_lengths", a.lengths, 192);
  // Each element of each geometry is in at most one cell, and a block in two: 3 x count x 64.
  const hsize_t most = hsize_t(std::min<std::uint64_t>(t.count, std::uint64_t{1} << 40)) * 3 * 64 + 64;
  read("bstats_keys", a.keys, most);
  read("bstats_counts", a.counts, most);
  if (a.shape.size() == 2 && a.shape[0] * a.shape[1] != t.count)
    c.fail("bstats_shape is not " + std::to_string(t.count) + " elements (@count)");
  try {
    return from_arrays(a, t.amax);
  } catch (const option_error& e) {
    c.fail(e.what());
  }
  return {};
}

}  // namespace fpscope
