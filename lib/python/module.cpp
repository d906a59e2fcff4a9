// The _fpscope extension: formats, policies, scalar and bulk conversion, class counts, the bucket
// histogram and trace reading, over NumPy arrays. Thin: every number comes from fpscope::core or
// fpscope::trace; the pure-Python package fpscope (lib/python/fpscope) re-exports it.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/arith_bulk.hpp"
#include "fpscope/block_quant.hpp"
#include "fpscope/block_stats.hpp"
#include "fpscope/convert.hpp"
#include "fpscope/format.hpp"
#include "fpscope/contain.hpp"
#include "fpscope/counting.hpp"
#include "fpscope/histogram.hpp"
#include "fpscope/operand_report.hpp"
#include "fpscope/options.hpp"
#include "fpscope/output.hpp"
#include "fpscope/policy.hpp"
#include "fpscope/detail/wire.hpp"
#include "fpscope/recipe.hpp"
#include "fpscope/replay.hpp"
#include "fpscope/report_json.hpp"
#include "fpscope/summary.hpp"
#include "fpscope/trace.hpp"
#include "fpscope/trace_merge.hpp"

namespace py = pybind11;
using namespace fpscope;

// Tensor-core models (issue 17): fpscope.mma_* and _gemm, in mma_module.cpp.
void add_mma_bindings(py::module_& m);

namespace {

// ValueError for bad names and values, TypeError for bad dtypes (pybind11's translations).
[[noreturn]] void value_error(const std::string& m) { throw py::value_error(m); }
[[noreturn]] void type_error(const std::string& m) { throw py::type_error(m); }

format lookup_format(const std::string& name) { return parse_format(name, "fmt"); }

// A name given from Python: None is "the default" (""); any text, the empty one too, goes
// through the library's parser first, so that "" is refused as any unknown name is.
template <class Parse>
std::string named(const std::optional<std::string>& v, Parse parse) {
  if (v) parse(*v);
  return v.value_or("");
}

// The library's resolution (fpscope/options.hpp, the same as the CLI's): the profile's policy
// for the format, then the explicit rounding and overflow on top. option_error is a ValueError.
policy resolve(const format& f, const std::string& prof, const std::optional<std::string>& round,
               const std::optional<std::string>& ovf, std::uint64_t seed) {
  const conversion_request r{f.name, named(prof, [](std::string_view v) { parse_profile(v, "profile"); }),
                             named(round, [](std::string_view v) { parse_rounding(v, "rounding"); }),
                             named(ovf, [](std::string_view v) { parse_overflow(v, "overflow"); }), seed};
  return fpscope::resolve(r).pol;
}

// The numpy dtype of a format's codes.
py::dtype code_dtype(const format& f) {
  switch (f.storage_bytes()) {
    case 1: return py::dtype::of<std::uint8_t>();
    case 2: return py::dtype::of<std::uint16_t>();
    default: return py::dtype::of<std::uint32_t>();
  }
}

std::string dtype_name(const py::dtype& d) { return py::str(static_cast<const py::handle&>(d)).cast<std::string>(); }
std::string dtype_name(const py::array& a) { return dtype_name(a.dtype()); }

// dtypes compare by kind, size and byte order, never by object identity: equal dtypes need not
// be one object (a dtype with metadata, one made by another library), and a big-endian array
// of the right kind and size is not one this module can read as native numbers.
bool has_dtype(const py::dtype& d, char kind, py::ssize_t size) {
  return d.kind() == kind && d.itemsize() == size && (d.byteorder() == '=' || d.byteorder() == '|');
}
bool has_dtype(const py::dtype& d, const py::dtype& want) { return has_dtype(d, want.kind(), want.itemsize()); }
bool is_dtype(const py::array& a, char kind, py::ssize_t size) { return has_dtype(a.dtype(), kind, size); }

// A C-contiguous view of `a` (a copy only when `a` is not already contiguous).
py::array contiguous(const py::array& a) {
  if (a.flags() & py::array::c_style) return a;
  return py::module_::import("numpy").attr("ascontiguousarray")(a).cast<py::array>();
}

// `out` checked to be a writable C-contiguous array of `dt` with n elements, or a new one shaped
// like `like`.
py::array output(const std::optional<py::array>& out, const py::dtype& dt, const py::array& like) {
  if (!out) {
    std::vector<py::ssize_t> shape(like.shape(), like.shape() + like.ndim());
    return py::array(dt, shape);
  }
  const py::array& o = *out;
  if (!has_dtype(o.dtype(), dt))
    type_error("out has dtype " + dtype_name(o) + ", expected " + dtype_name(dt));
  if (o.size() != like.size())
    value_error("out has " + std::to_string(o.size()) + " elements, the input " + std::to_string(like.size()));
  if (!(o.flags() & py::array::c_style)) value_error("out must be C-contiguous");
  if (!o.writeable()) value_error("out is read-only");
  return o;
}

template <class T>
std::span<const T> span_of(const py::array& a) {
  return {static_cast<const T*>(a.data()), static_cast<std::size_t>(a.size())};
}
template <class T>
std::span<T> mutable_span_of(py::array& a) {
  return {static_cast<T*>(a.mutable_data()), static_cast<std::size_t>(a.size())};
}

// Float input as float32 or float64; float16 widens exactly to float32 (a copy).
py::array float_input(const py::array& x, const char* what) {
  if (is_dtype(x, 'f', 4) || is_dtype(x, 'f', 8)) return contiguous(x);
  if (is_dtype(x, 'f', 2)) return x.attr("astype")("float32").cast<py::array>();
  type_error(std::string(what) + " needs float16, float32 or float64 values, got dtype " + dtype_name(x));
}

// ---- formats ----

// The library's facts under its key names, as `fpscope formats --json` prints them.
py::dict format_info(const format& f) {
  py::dict d;
  for_each_fact(facts_of(f), [&d](const char* key, const auto& v) { d[key] = py::cast(v); });  // empty optional: None
  return d;
}

// ---- conversion ----

py::tuple cast_scalar(double x, const std::string& fmt, const std::string& prof, const std::optional<std::string>& round,
                      const std::optional<std::string>& ovf, std::uint64_t seed, double scale, std::uint64_t index) {
  const format f = lookup_format(fmt);
  const policy p = resolve(f, prof, round, ovf, seed);
  check_scale(scale);
  unsigned fl = 0;
  // As `fpscope cast`: the value times the scale in float64, then one rounding.
  const std::uint32_t bits = encode(x * scale, f, p, index, fl);
  py::dict flags;
  flags["inexact"] = (fl & flag_inexact) != 0;
  flags["underflow"] = (fl & flag_underflow) != 0;
  flags["overflow"] = (fl & flag_overflow) != 0;
  flags["invalid"] = (fl & flag_invalid) != 0;
  return py::make_tuple(bits, decode(bits, f), flags);
}

template <class In>
void encode_into(std::span<const In> in, py::array& out, const format& f, const policy& p, const bulk_options& o) {
  switch (f.storage_bytes()) {
    case 1: encode(in, mutable_span_of<std::uint8_t>(out), f, p, o); break;
    case 2: encode(in, mutable_span_of<std::uint16_t>(out), f, p, o); break;
    default: encode(in, mutable_span_of<std::uint32_t>(out), f, p, o); break;
  }
}

py::array encode_array(const py::array& x_, const std::string& fmt, const std::string& prof,
                       const std::optional<std::string>& round, const std::optional<std::string>& ovf,
                       std::uint64_t seed, double scale, std::uint64_t first_index, int threads,
                       const std::optional<py::array>& out_) {
  const format f = lookup_format(fmt);
  const policy p = resolve(f, prof, round, ovf, seed);
  check_scale(scale);
  check_threads(threads, "threads");
  const py::array x = float_input(x_, "encode");
  py::array out = output(out_, code_dtype(f), x);
  bulk_options o;
  o.scale = scale;
  o.first_index = first_index;
  o.threads = threads;
  const bool single = is_dtype(x, 'f', 4);
  {
    py::gil_scoped_release unlocked;  // the arrays stay referenced by this frame
    if (single) encode_into(span_of<float>(x), out, f, p, o);
    else encode_into(span_of<double>(x), out, f, p, o);
  }
  return out;
}

template <class In>
void decode_from(const py::array& in, py::array& out, const format& f, bool single) {
  if (single) decode(span_of<In>(in), mutable_span_of<float>(out), f);
  else decode(span_of<In>(in), mutable_span_of<double>(out), f);
}

py::array decode_array(const py::array& bits_, const std::string& fmt, const std::string& dtype,
                       const std::optional<py::array>& out_) {
  const format f = lookup_format(fmt);
  const py::array bits = contiguous(bits_);
  if (!has_dtype(bits.dtype(), code_dtype(f)))
    type_error("decode of " + std::string(f.name) + " needs " + dtype_name(code_dtype(f)) +
               " codes, got dtype " + dtype_name(bits));
  bool single;
  if (dtype == "float32") single = true;
  else if (dtype == "float64") single = false;
  else value_error("decode dtype must be 'float32' or 'float64', got '" + dtype + "'");
  py::array out = output(out_, single ? py::dtype::of<float>() : py::dtype::of<double>(), bits);
  {
    py::gil_scoped_release unlocked;
    switch (f.storage_bytes()) {
      case 1: decode_from<std::uint8_t>(bits, out, f, single); break;
      case 2: decode_from<std::uint16_t>(bits, out, f, single); break;
      default: decode_from<std::uint32_t>(bits, out, f, single); break;
    }
  }
  return out;
}

py::array classify_array(const py::array& bits_, const std::string& fmt) {
  const format f = lookup_format(fmt);
  const py::array bits = contiguous(bits_);
  if (!has_dtype(bits.dtype(), code_dtype(f)))
    type_error("classify of " + std::string(f.name) + " needs " + dtype_name(code_dtype(f)) +
               " codes, got dtype " + dtype_name(bits));
  switch (f.storage_bytes()) {  // codes wider than the format: ValueError, as decode and apply
    case 1: check_codes(span_of<std::uint8_t>(bits), f); break;
    case 2: check_codes(span_of<std::uint16_t>(bits), f); break;
    default: check_codes(span_of<std::uint32_t>(bits), f); break;
  }
  py::array out = output(std::nullopt, py::dtype::of<std::uint8_t>(), bits);
  auto* o = static_cast<std::uint8_t*>(out.mutable_data());
  const auto n = static_cast<std::size_t>(bits.size());
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t b = 0;
    std::memcpy(&b, static_cast<const char*>(bits.data()) + i * std::size_t(f.storage_bytes()), std::size_t(f.storage_bytes()));
    o[i] = static_cast<std::uint8_t>(classify(b, f));
  }
  return out;
}

// ---- arithmetic ----
template <class W>
void apply_codes(op o, const std::vector<py::array>& v, py::array& out, const format& f, const policy& p,
                 const bulk_options& opt) {
  const auto n = static_cast<std::size_t>(out.size());
  const auto in = [&](std::size_t i) { return i < v.size() ? span_of<W>(v[i]) : std::span<const W>(); };
  fpscope::apply<W>(o, in(0), in(1), in(2), mutable_span_of<W>(out).first(n), f, p, opt);
}

py::array apply_array(const std::string& op_name, const py::object& a, const py::object& b, const py::object& c,
                      const std::string& fmt, const std::string& prof,
                      const std::optional<std::string>& round, const std::optional<std::string>& ovf,
                      std::uint64_t seed, std::uint64_t first_index, int threads, const std::optional<py::array>& out_) {
  const op_info* spec = nullptr;
  std::string known;
  for (const auto& s : op_table) {
    known += std::string(known.empty() ? "" : ", ") + s.name;
    if (op_name == s.name) spec = &s;
  }
  if (!spec) value_error("unknown operation '" + op_name + "' (known: " + known + ")");
  const format f = lookup_format(fmt);
  const policy p = resolve(f, prof, round, ovf, seed);
  check_threads(threads, "threads");
  // Arrays or NumPy scalars of the code dtype (np.uint16(0x3c00)); Python ints are refused
  // below by dtype, as they would guess a width.
  const auto asarray = [](const py::object& x) {
    return py::module_::import("numpy").attr("asarray")(x).cast<py::array>();
  };
  const py::object* given[3] = {&a, &b, &c};
  std::vector<py::array> ops;
  for (int i = 0; i < 3; ++i) {
    const bool has = !given[i]->is_none();
    if (i < spec->arity && !has)
      value_error(std::string(spec->name) + " takes " + std::to_string(spec->arity) + " operands, got " +
                  std::to_string(i));
    if (i >= spec->arity && has)
      value_error(std::string(spec->name) + " takes " + std::to_string(spec->arity) + " operand" +
                  (spec->arity == 1 ? "" : "s") + ", got more");
    if (has) ops.push_back(asarray(*given[i]));
  }
  for (std::size_t i = 0; i < ops.size(); ++i)
    if (!has_dtype(ops[i].dtype(), code_dtype(f)))
      type_error(std::string(spec->name) + " of " + f.name + " needs " + dtype_name(code_dtype(f)) + " codes, operand " +
                 std::to_string(i + 1) + " has dtype " + dtype_name(ops[i]));
  // NumPy broadcasting, then C-contiguous copies where the views are not.
  if (ops.size() > 1) {
    py::tuple bc;
    try {
      bc = py::module_::import("numpy").attr("broadcast_arrays")(*py::cast(ops)).cast<py::tuple>();
    } catch (const py::error_already_set&) {
      value_error(std::string(spec->name) + ": operand shapes do not broadcast");
    }
    for (std::size_t i = 0; i < ops.size(); ++i)
      ops[i] = py::module_::import("numpy").attr("ascontiguousarray")(bc[i]).cast<py::array>();
  } else {
    ops[0] = contiguous(ops[0]);
  }
  py::array out = output(out_, code_dtype(f), ops[0]);
  bulk_options opt;
  opt.first_index = first_index;
  opt.threads = threads;
  {
    py::gil_scoped_release unlocked;  // the arrays stay referenced by this frame
    switch (f.storage_bytes()) {
      case 1: apply_codes<std::uint8_t>(spec->o, ops, out, f, p, opt); break;
      case 2: apply_codes<std::uint16_t>(spec->o, ops, out, f, p, opt); break;
      default: apply_codes<std::uint32_t>(spec->o, ops, out, f, p, opt); break;
    }
  }
  return out;
}

// ---- histogram analysis ----

py::dict counts_dict(const std::vector<float>& scales, const std::vector<class_counts>& counts, bool exact) {
  py::dict d;
  py::array_t<double> s(static_cast<py::ssize_t>(scales.size()));
  for (std::size_t i = 0; i < scales.size(); ++i) s.mutable_at(static_cast<py::ssize_t>(i)) = scales[i];
  d["scale"] = s;
  for (int c = 0; c < cast_class_count; ++c) {
    py::array_t<std::uint64_t> a(static_cast<py::ssize_t>(counts.size()));
    for (std::size_t i = 0; i < counts.size(); ++i) a.mutable_at(static_cast<py::ssize_t>(i)) = counts[i].n[std::size_t(c)];
    d[py::str(std::string(name(static_cast<cast_class>(c))))] = a;
  }
  d["exact"] = exact;
  return d;
}

std::vector<cast_spec> make_specs(const std::string& fmt, const std::vector<double>& scales, const std::string& prof,
                                  const std::optional<std::string>& round, const std::optional<std::string>& ovf) {
  const format f = lookup_format(fmt);
  const policy p = resolve(f, prof, round, ovf, 0);
  if (scales.empty()) value_error("class_counts needs at least one scale");
  std::vector<cast_spec> specs;
  for (double s : scales) {
    const auto s32 = static_cast<float>(check_scale(s));
    if (double(s32) != s)
      value_error("scale " + py::str(py::float_(s)).cast<std::string>() + " is not a float32: counts take positive finite float32 scales");
    specs.push_back({f, p, s32});
  }
  try {
    for (const auto& c : specs) check(c);
  } catch (const std::invalid_argument& e) {
    value_error(e.what());
  }
  return specs;
}

py::dict class_counts_array(const py::array& x_, const std::string& fmt, const std::vector<double>& scales,
                            const std::string& prof, const std::optional<std::string>& round,
                            const std::optional<std::string>& ovf, int threads) {
  auto specs = make_specs(fmt, scales, prof, round, ovf);
  check_threads(threads, "threads");
  const py::array x = float_input(x_, "class_counts");
  std::vector<float> s32;
  for (const auto& c : specs) s32.push_back(c.scale);
  std::vector<class_counts> counts;
  {
    py::gil_scoped_release unlocked;  // the array stays referenced by this frame
    counts = is_dtype(x, 'f', 4) ? count_classes(span_of<float>(x), specs, threads)
                                 : count_classes(span_of<double>(x), specs, threads);
  }
  return counts_dict(s32, counts, true);
}

// Counts from a recorded sparse histogram (a trace's hist_keys/hist_counts).
py::dict class_counts_histogram(const py::array_t<std::uint32_t, py::array::c_style | py::array::forcecast>& keys,
                                const py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>& counts,
                                const std::string& fmt, const std::vector<double>& scales, const std::string& prof,
                                const std::optional<std::string>& round, const std::optional<std::string>& ovf) {
  if (keys.size() != counts.size()) value_error("keys and counts differ in length");
  auto specs = make_specs(fmt, scales, prof, round, ovf);
  std::vector<float> s32;
  for (const auto& c : specs) s32.push_back(c.scale);
  std::vector<std::pair<std::uint32_t, std::uint64_t>> b;
  for (py::ssize_t i = 0; i < keys.size(); ++i) {
    if (keys.at(i) >= bucket_histogram::bucket_count) value_error("bucket key out of range");
    b.emplace_back(keys.at(i), counts.at(i));
  }
  class_tally t(std::move(specs));
  t.add_histogram(b);
  return counts_dict(s32, t.counts(), t.exact());
}

py::tuple sparse_tuple(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& sp) {
  py::array_t<std::uint32_t> k(static_cast<py::ssize_t>(sp.size()));
  py::array_t<std::uint64_t> c(static_cast<py::ssize_t>(sp.size()));
  std::uint32_t* keys = k.mutable_data();  // fresh arrays: plain stores, no per-element checks
  std::uint64_t* counts = c.mutable_data();
  for (std::size_t i = 0; i < sp.size(); ++i) keys[i] = sp[i].first, counts[i] = sp[i].second;
  return py::make_tuple(k, c);
}

py::array float32_input(const py::array& x_, const char* what) {
  const py::array x = float_input(x_, what);
  if (!is_dtype(x, 'f', 4)) type_error(std::string(what) + " counts float32 values (float16 widens), got float64");
  return x;
}

py::tuple bucket_histogram_array(const py::array& x_, int threads) {
  check_threads(threads, "threads");
  const py::array x = float32_input(x_, "bucket_histogram");
  bucket_histogram h;
  {
    py::gil_scoped_release unlocked;
    h.add(span_of<float>(x), threads);
  }
  return sparse_tuple(h.sparse());
}

// A tensor's trace attributes and bucket histogram (fpscope::summarize), for the recorder
// (tools/record/fpscope_record.py): (keys, counts, {count, amax, zeros, infs, nans}).
py::tuple summary_array(const py::array& x_, int threads) {
  check_threads(threads, "threads");
  const py::array x = float32_input(x_, "tensor_summary");
  tensor_summary s;
  {
    py::gil_scoped_release unlocked;
    s = summarize(span_of<float>(x), threads);
  }
  const py::tuple kc = sparse_tuple(s.hist.sparse());
  py::dict d;
  d["count"] = s.count;
  d["amax"] = s.amax;
  d["zeros"] = s.zeros;
  d["infs"] = s.infs;
  d["nans"] = s.nans;
  return py::make_tuple(kc[0], kc[1], d);
}

py::tuple binades_of(const std::map<int, std::uint64_t>& m) {
  py::array_t<std::int32_t> e(static_cast<py::ssize_t>(m.size()));
  py::array_t<std::uint64_t> c(static_cast<py::ssize_t>(m.size()));
  py::ssize_t i = 0;
  for (const auto& [k, v] : m) {
    e.mutable_at(i) = k;
    c.mutable_at(i) = v;
    ++i;
  }
  return py::make_tuple(e, c);
}

py::tuple binades_array(const py::array& x_) {
  const py::array x = float32_input(x_, "binades");
  bucket_histogram h;
  {
    py::gil_scoped_release unlocked;
    h.add(span_of<float>(x));
  }
  return binades_of(h.binades());
}

py::tuple binades_histogram(const py::array_t<std::uint32_t, py::array::c_style | py::array::forcecast>& keys,
                            const py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>& counts) {
  if (keys.size() != counts.size()) value_error("keys and counts differ in length");
  std::vector<std::pair<std::uint32_t, std::uint64_t>> b;
  for (py::ssize_t i = 0; i < keys.size(); ++i) {
    if (keys.at(i) >= bucket_histogram::bucket_count) value_error("bucket key out of range");
    b.emplace_back(keys.at(i), counts.at(i));
  }
  bucket_histogram h;
  h.add_sparse(b);
  return binades_of(h.binades());
}

// ---- the power-of-two sweep and the scales to use ----

constexpr std::size_t sweep_size = scale_sweep::size;

// Class arrays of `counts` into d (one uint64 array per class).
void put_classes(py::dict& d, const std::vector<class_counts>& counts) {
  for (int c = 0; c < cast_class_count; ++c) {
    py::array_t<std::uint64_t> a(static_cast<py::ssize_t>(counts.size()));
    for (std::size_t i = 0; i < counts.size(); ++i) a.mutable_at(static_cast<py::ssize_t>(i)) = counts[i].n[std::size_t(c)];
    d[py::str(std::string(name(cast_class(c))))] = a;
  }
}

py::dict sweep_array(const py::array& x_, const std::string& fmt, const std::string& prof,
                     const std::optional<std::string>& round, const std::optional<std::string>& ovf, int threads) {
  conversion c;
  c.fmt = lookup_format(fmt);
  c.pol = resolve(c.fmt, prof, round, ovf, 0);
  require_deterministic(c, "sweep");
  check_threads(threads, "threads");
  const py::array x = float_input(x_, "sweep");
  const auto specs = scale_sweep::specs(c.fmt, c.pol);
  std::vector<class_counts> counts;
  {
    py::gil_scoped_release unlocked;
    counts = is_dtype(x, 'f', 4) ? count_classes(span_of<float>(x), specs, threads)
                                 : count_classes(span_of<double>(x), specs, threads);
  }
  py::dict d;
  d["format"] = std::string(c.fmt.name);
  py::array_t<std::int32_t> k(static_cast<py::ssize_t>(sweep_size));
  py::array_t<double> sc(static_cast<py::ssize_t>(sweep_size));
  for (std::size_t i = 0; i < sweep_size; ++i) {
    k.mutable_at(static_cast<py::ssize_t>(i)) = scale_sweep::kmin + int(i);
    sc.mutable_at(static_cast<py::ssize_t>(i)) = std::ldexp(1.0, scale_sweep::kmin + int(i));
  }
  d["log2_scale"] = k;
  d["scale"] = sc;
  put_classes(d, counts);
  return d;
}

py::object recommendation_dict(const std::optional<recommendation>& r) {
  if (!r) return py::none();
  py::dict d;
  d["log2_scale"] = r->log2_scale;
  d["scale"] = std::ldexp(1.0, r->log2_scale);
  for (int c = 0; c < cast_class_count; ++c) d[py::str(std::string(name(cast_class(c))))] = r->counts.n[std::size_t(c)];
  return py::object(d);
}

py::dict recommend_dict(const py::dict& sweep, int headroom) {
  if (headroom < 0 || headroom > 64) value_error("headroom must be 0 to 64 binades, not " + std::to_string(headroom));
  std::vector<class_counts> counts(sweep_size);
  for (int c = 0; c < cast_class_count; ++c) {
    const std::string key(name(cast_class(c)));
    if (!sweep.contains(key)) value_error("recommend needs a sweep() result: no '" + key + "' counts");
    const auto a = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(sweep[py::str(key)]);
    if (!a || std::size_t(a.size()) != sweep_size)
      value_error("recommend needs a sweep() result: '" + key + "' must hold " + std::to_string(sweep_size) + " counts");
    for (std::size_t i = 0; i < sweep_size; ++i) counts[i].n[std::size_t(c)] = a.at(static_cast<py::ssize_t>(i));
  }
  const recommendations r = recommend(scale_sweep(counts), headroom);
  py::dict d;
  d["gradscaler"] = recommendation_dict(r.gradscaler);
  d["no_overflow_log2"] = r.gradscaler ? py::object(py::int_(r.no_overflow_log2)) : py::object(py::none());
  d["fewest_lost"] = recommendation_dict(r.fewest_lost);
  d["fewest_lost_range"] =
      r.fewest_lost ? py::object(py::make_tuple(r.fewest_lost_range.first, r.fewest_lost_range.second)) : py::object(py::none());
  return d;
}

// ---- replay ----

// Runs work(cancelled), a call that runs a contained worker (fpscope/contain.hpp), with the GIL
// released: `cancelled` takes the GIL back to check for Ctrl-C, which kills the worker and
// comes back as contained_error with the Python error set (raised here as that error).
template <class Work>
auto interruptible(Work&& work) {
  try {
    py::gil_scoped_release unlocked;
    return work([] {
      py::gil_scoped_acquire locked;
      return PyErr_CheckSignals() != 0;
    });
  } catch (const contained_error&) {
    if (PyErr_Occurred()) throw py::error_already_set();
    throw;
  }
}

py::dict replay_trace(const std::vector<std::string>& paths, const std::string& policy, const std::optional<std::string>& fmt,
                      const std::optional<std::string>& prof, const std::optional<std::string>& round,
                      const std::optional<std::string>& ovf, const std::optional<std::string>& steps, int threads,
                      std::size_t top, bool tensors, const std::optional<std::string>& group) {
  replay_options o;
  if (group) {
    if (paths.size() < 2) throw py::value_error("amax_group: needs several rank traces");
    o.group = parse_amax_group(*group, "amax_group");
  }
  o.policy = policy;
  o.cast = {named(fmt, [](std::string_view v) { parse_format(v, "format"); }),
            named(prof, [](std::string_view v) { parse_profile(v, "profile"); }),
            named(round, [](std::string_view v) { parse_rounding(v, "rounding"); }),
            named(ovf, [](std::string_view v) { parse_overflow(v, "overflow"); }), 0};
  o.steps = parse_steps(steps.value_or(""), "steps");
  o.threads = check_threads(threads, "threads");
  o.top = top;
  o.keep_tensors = tensors;
  // The worker runs the library's engine.
  const replay_result r = interruptible([&](const auto& cancelled) { return replay_files(paths, o, cancelled); });
  // The dict is the --json schema itself (docs/json.md), parsed; "arrays" adds the per-step
  // columns as NumPy arrays.
  py::dict d = py::module_::import("json").attr("loads")(json_text(replay_json(r)));
  const auto n = static_cast<py::ssize_t>(r.steps.size());
  py::array_t<std::int64_t> step(n);
  py::array_t<double> scale(n);
  py::array_t<bool> skipped(n);
  std::vector<class_counts> totals;
  for (py::ssize_t i = 0; i < n; ++i) {
    const auto& s = r.steps[std::size_t(i)];
    step.mutable_at(i) = s.step, scale.mutable_at(i) = s.scale, skipped.mutable_at(i) = s.skipped;
    totals.push_back(s.total);
  }
  py::dict arrays;
  arrays["step"] = step;
  arrays["scale"] = scale;
  arrays["skipped"] = skipped;
  put_classes(arrays, totals);
  d["arrays"] = arrays;
  return d;
}

// ---- recipes over a trace's GEMM operands (issue 16; fpscope/operand_report.hpp) ----

// The report's JSON (`fpscope recipes TRACE --json`), computed in the contained worker: the
// trace may be hostile, and the quantization of every operand is the long part.
std::string recipes_report_json(const std::string& path, const std::vector<std::string>& specs, long long step, double budget) {
  for (const auto& s : specs) (void)make_recipe(s);  // a bad spec: ValueError here, not from the worker
  if (step < -1) value_error("step: a step index >= 0, or None");
  if (!(budget == -1 || (budget >= 0 && budget <= 1))) value_error("keep_bf16: a fraction in [0, 1], or None");
  return interruptible([&](const auto& cancelled) {
    return run_contained(path, [&] {
      const trace_reader tr(path);
      const operand_report r = report_operands(tr, step, specs, [] { heartbeat(); });
      heartbeat_done();
      return json_text(operand_report_json(r, judge(r, budget)));
    }, cancelled);
  });
}

// ---- trace merge (issue 18) ----

py::dict merge_traces(const std::vector<std::string>& paths, const std::string& out, bool histograms, int threads) {
  merge_options o;
  o.values = !histograms;
  o.threads = check_threads(threads, "threads");
  merge_result m;
  try {
    m = interruptible([&](const auto& cancelled) { return merge_files(paths, out, o, cancelled); });
  } catch (const output_error& e) {
    PyErr_SetString(PyExc_OSError, e.what());
    throw py::error_already_set();
  }
  py::dict d;
  d["world_size"] = m.world_size;
  d["steps"] = m.steps;
  d["incomplete"] = m.incomplete;
  d["left_out"] = m.left_out;
  return d;
}

// ---- traces ----

// Trace reads libhdf5 on files that may be hostile: libhdf5 crashes on some crafted files and
// loops forever on others (tests/trace/corpus). Each read therefore runs in the library's
// contained worker (fpscope/contain.hpp, as replay() and the CLI do): the worker opens the
// trace, reads what was asked and sends it back as bytes; a crash or a stall there is a
// ValueError here, never a dead or stuck interpreter. The cost is a fork and an open per call
// (milliseconds); values cross a pipe once.
// Doubles travel as their bits: JSON has no NaN or inf (a loss may be NaN).
std::uint64_t bits_of(double d) { return std::bit_cast<std::uint64_t>(d); }
double from_bits(const nlohmann::json& j) { return std::bit_cast<double>(j.get<std::uint64_t>()); }

nlohmann::json step_json(const trace_step& s) {
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& t : s.tensors) {
    ts.push_back({{"name", t.name}, {"dtype", std::string(name(t.dtype))}, {"shape", t.shape}, {"count", t.count},
                  {"amax", bits_of(t.amax)}, {"zeros", t.zeros}, {"infs", t.infs}, {"nans", t.nans},
                  {"has_values", t.has_values}, {"has_hist", t.has_hist}, {"shard", nullptr}, {"operand", nullptr}});
    if (const auto& op = t.operand)  // GEMM operands (docs/trace.md): the recorder's attribute names
      ts.back()["operand"] = {{"role", std::string(name(op->role))}, {"layer", op->layer}, {"gemm_shape", {op->rows, op->cols}}};
    ts.back()["has_block_stats"] = t.has_block_stats;
    if (const auto& sh = t.shard) {  // multi-rank traces (docs/trace.md): flat_shard/split_shard's keys
      nlohmann::json js{{"logical_name", sh->logical_name}, {"logical_shape", sh->logical_shape}};
      if (sh->how == trace_shard::kind::flat) js["offset"] = sh->offset;
      else js["dim"] = sh->dim, js["index"] = sh->index, js["parts"] = sh->parts;
      ts.back()["shard"] = js;
    }
  }
  return {{"step", s.step}, {"loss", bits_of(s.loss)}, {"lr", bits_of(s.lr)}, {"loss_scale", bits_of(s.loss_scale)},
          {"tensors", ts}};
}

py::dict block_stats_py(const operand_block_stats& st);

class trace {
 public:
  explicit trace(const std::string& path) : path_(path) { read_meta(); }
  // The rank traces of one distributed run as one logical trace (docs/replay.md, "Several
  // ranks"): merged once, in a worker, into an in-memory HDF5 image that every later read opens
  // (histograms=True keeps the shards' histograms only, not their values).
  trace(const std::vector<std::string>& paths, bool histograms, int threads) {
    if (paths.size() < 2) value_error("Trace: a list of paths names the traces of several ranks");
    path_ = paths.front() + " (+" + std::to_string(paths.size() - 1) + " rank traces)";
    merge_options o;
    o.values = !histograms;
    o.threads = check_threads(threads, "threads");
    merge_result m = interruptible([&](const auto& cancelled) { return merge_contained(paths, o, cancelled); });
    image_ = std::move(m.image);
    read_meta();
    // The ranks' unfinished last steps, and the steps not every rank recorded (left out).
    incomplete_.insert(incomplete_.end(), m.incomplete.begin(), m.incomplete.end());
    incomplete_.insert(incomplete_.end(), m.left_out.begin(), m.left_out.end());
  }
  void read_meta() {
    const std::string meta = contained([&] {
      const auto rp = open();
      const trace_reader& r = *rp;
      detail::wire_writer w;
      w.pod(std::uint64_t(r.size()));
      nlohmann::json j{{"producer", r.producer()}, {"model", r.model()}, {"incomplete", r.incomplete()}, {"layout", nullptr}};
      if (const auto& l = r.layout()) {  // multi-rank traces (docs/trace.md): the Recorder's keys
        j["layout"] = {{"rank", l->rank}, {"world_size", l->world_size}};
        for (const auto& [k, c] : {std::pair{"dp", l->dp}, {"tp", l->tp}, {"pp", l->pp}})
          if (c) j["layout"][k] = {c->rank, c->size};
      }
      return w.out + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    });
    detail::wire_reader rd(meta, "trace");
    size_ = rd.pod<std::uint64_t>();
    const auto j = nlohmann::json::parse(rd.rest());
    producer_ = j["producer"];
    model_ = j["model"];
    incomplete_ = j["incomplete"].get<std::vector<std::string>>();
    layout_ = j["layout"].dump();
  }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  const std::string& producer() const { return producer_; }
  const std::string& model() const { return model_; }
  const std::vector<std::string>& incomplete() const { return incomplete_; }
  /// None, or {"rank", "world_size", and "dp"/"tp"/"pp": (rank, size) where recorded}.
  py::object layout() const {
    const auto j = nlohmann::json::parse(layout_);
    if (j.is_null()) return py::none();
    py::dict d;
    for (const auto& [k, v] : j.items())
      d[py::str(k)] = v.is_array() ? py::object(py::make_tuple(v[0].get<std::int64_t>(), v[1].get<std::int64_t>()))
                                   : py::object(py::int_(v.get<std::int64_t>()));
    return d;
  }

  py::dict step(std::size_t i) const {
    const nlohmann::json j = nlohmann::json::parse(step_text(i));
    py::dict d;
    d["step"] = j["step"].get<std::int64_t>();
    for (const char* k : {"loss", "lr", "loss_scale"}) d[k] = from_bits(j[k]);
    py::list ts;
    for (const auto& t : j["tensors"]) {
      py::dict td;
      td["name"] = t["name"].get<std::string>();
      td["dtype"] = t["dtype"].get<std::string>();
      td["shape"] = py::tuple(py::cast(t["shape"].get<std::vector<std::uint64_t>>()));
      for (const char* k : {"count", "zeros", "infs", "nans"}) td[k] = t[k].get<std::uint64_t>();
      td["amax"] = from_bits(t["amax"]);
      td["has_values"] = t["has_values"].get<bool>();
      td["has_hist"] = t["has_hist"].get<bool>();
      td["has_block_stats"] = t["has_block_stats"].get<bool>();
      td["shard"] = py::none();
      if (!t["shard"].is_null()) {
        py::dict sd;
        for (const auto& [k, v] : t["shard"].items())
          sd[py::str(k)] = v.is_array() ? py::object(py::tuple(py::cast(v.get<std::vector<std::uint64_t>>())))
                                        : k == "logical_name" ? py::object(py::str(v.get<std::string>()))
                                                              : py::object(py::int_(v.get<std::uint64_t>()));
        td["shard"] = sd;
      }
      td["operand"] = py::none();
      if (const auto& op = t["operand"]; !op.is_null()) {
        py::dict od;
        od["role"] = op["role"].get<std::string>();
        od["layer"] = op["layer"].get<std::string>();
        od["gemm_shape"] = py::make_tuple(op["gemm_shape"][0].get<std::uint64_t>(), op["gemm_shape"][1].get<std::uint64_t>());
        td["operand"] = od;
      }
      ts.append(td);
    }
    d["tensors"] = ts;
    return d;
  }
  py::array values(std::size_t i, const std::string& tensor) const {
    const std::string answer = in_tensor(i, tensor, [&](const trace_reader& r, const trace_step& s, const trace_tensor& x) {
      if (!x.has_values) return std::string(1, no_data);
      detail::wire_writer w;
      w.out.push_back(data);
      w.pod(std::uint64_t(x.shape.size()));
      for (const auto d : x.shape) w.pod(std::uint64_t(d));
      w.out.reserve(w.out.size() + x.count * sizeof(float));
      const std::size_t at = w.out.size();
      r.values(s, x, [&](std::span<const float> c) {
        if (w.out.size() - at + c.size_bytes() > x.count * sizeof(float)) throw trace_error(path_ + ": more values than count");
        w.out.append(reinterpret_cast<const char*>(c.data()), c.size_bytes());
        heartbeat();
      });
      heartbeat_done();
      if (w.out.size() - at != x.count * sizeof(float)) throw trace_error(path_ + ": fewer values than count");
      return std::move(w.out);
    });
    if (answer[0] == no_data)
      value_error("tensor '" + tensor + "' of step index " + std::to_string(i) + " has no raw values");
    detail::wire_reader rd(std::string_view(answer).substr(1), "trace");
    std::vector<py::ssize_t> shape(rd.pod<std::uint64_t>());
    for (auto& d : shape) d = static_cast<py::ssize_t>(rd.pod<std::uint64_t>());
    const std::string_view bytes = rd.rest();
    py::array_t<float> out(static_cast<py::ssize_t>(bytes.size() / sizeof(float)));
    std::memcpy(out.mutable_data(), bytes.data(), bytes.size());
    return out.reshape(shape);
  }
  // The tensor's block statistics (docs/trace.md "Block statistics") as fpscope.block_stats
  // returns them: read and checked in the worker, sent as their arrays, checked again here.
  py::dict block_stats(std::size_t i, const std::string& tensor) const {
    const std::string answer = in_tensor(i, tensor, [&](const trace_reader& r, const trace_step& s, const trace_tensor& x) {
      if (!x.has_block_stats) return std::string(1, no_data);
      const block_stats_arrays a = to_arrays(r.block_stats(s, x));
      detail::wire_writer w;
      w.out.push_back(data);
      w.pod(x.amax);
      auto put = [&w](const auto& v) {
        w.pod(std::uint64_t(v.size()));
        for (const auto e : v) w.pod(e);
      };
      put(a.shape), put(a.thresholds), put(a.geometry), put(a.lengths), put(a.keys), put(a.counts);
      return std::move(w.out);
    });
    if (answer[0] == no_data)
      value_error("tensor '" + tensor + "' of step index " + std::to_string(i) + " has no block statistics");
    detail::wire_reader rd(std::string_view(answer).substr(1), "trace");
    const double amax = rd.pod<double>();
    block_stats_arrays a;
    auto get = [&rd](auto& v) {
      v.resize(rd.pod<std::uint64_t>());
      for (auto& e : v) e = rd.pod<std::remove_reference_t<decltype(e)>>();
    };
    get(a.shape), get(a.thresholds), get(a.geometry), get(a.lengths), get(a.keys), get(a.counts);
    return block_stats_py(from_arrays(a, amax));
  }
  py::tuple histogram(std::size_t i, const std::string& tensor) const {
    const std::string answer = in_tensor(i, tensor, [&](const trace_reader& r, const trace_step& s, const trace_tensor& x) {
      if (!x.has_hist) return std::string(1, no_data);
      detail::wire_writer w;
      w.out.push_back(data);
      for (const auto& [k, n] : r.histogram(s, x)) w.pod(k), w.pod(n);
      return std::move(w.out);
    });
    if (answer[0] == no_data)
      value_error("tensor '" + tensor + "' of step index " + std::to_string(i) + " has no histogram");
    std::vector<std::pair<std::uint32_t, std::uint64_t>> h;
    for (detail::wire_reader rd(std::string_view(answer).substr(1), "trace"); !rd.done();) {
      const auto k = rd.pod<std::uint32_t>();
      h.emplace_back(k, rd.pod<std::uint64_t>());
    }
    return sparse_tuple(h);
  }

 private:
  // Runs `body` in the contained worker with the GIL released; Ctrl-C kills the worker (as
  // replay() does). Errors: trace_error and a worker's crash or stall come back as
  // contained_error, a ValueError in Python.
  std::string contained(const std::function<std::string()>& body) const {
    return interruptible([&](const auto& cancelled) { return run_contained(path_, body, cancelled); });
  }
  std::string step_text(std::size_t i) const {
    if (i >= size_) throw py::index_error("step index " + std::to_string(i) + " out of range (" + std::to_string(size_) + " steps)");
    return contained([&] {
      return step_json(open()->step(i)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    });
  }
  // The first byte of an in_tensor() answer: what follows.
  static constexpr char data = 'D', no_data = 'N', no_tensor = 'T';
  // Runs `body` on tensor `n` of step index i in one contained worker (one fork and one open
  // per call, the tensor found where it is read); KeyError when the step has no such tensor.
  template <class Body>
  std::string in_tensor(std::size_t i, const std::string& n, Body body) const {
    if (i >= size_) throw py::index_error("step index " + std::to_string(i) + " out of range (" + std::to_string(size_) + " steps)");
    const std::string answer = contained([&] {
      const auto r = open();
      const trace_step s = r->step(i);
      for (const auto& x : s.tensors)
        if (x.name == n) return body(*r, s, x);
      detail::wire_writer w;
      w.out.push_back(no_tensor);
      w.pod(s.step);
      return std::move(w.out);
    });
    if (answer.empty()) throw trace_error(path_ + ": the worker's answer is empty");
    if (answer[0] == no_tensor) {
      detail::wire_reader rd(std::string_view(answer).substr(1), "trace");
      throw py::key_error("no tensor '" + n + "' in step " + std::to_string(rd.pod<std::int64_t>()));
    }
    return answer;
  }
  // The reader, in the worker: of the file, or of the merged run's image.
  std::unique_ptr<trace_reader> open() const {
    return image_.empty() ? std::make_unique<trace_reader>(path_) : std::make_unique<trace_reader>(std::string_view(image_), path_);
  }
  std::string path_, producer_, model_, layout_ = "null", image_;
  std::vector<std::string> incomplete_;
  std::size_t size_ = 0;
};

// fpscope::trace_writer, with its errors as ValueError and a context manager in Python.
class writer {
 public:
  writer(const std::string& path, const std::string& producer, const std::string& model, bool overwrite) {
    try {
      w_ = std::make_unique<trace_writer>(path, producer, model, overwrite);
    } catch (const trace_error& e) {
      throw py::value_error(e.what());
    }
  }
  void step(std::int64_t step, double loss, double lr, double loss_scale, const py::dict& tensors, bool raw, bool hist) {
    live().begin_step(step, loss, lr, loss_scale);
    for (const auto& [k, v] : tensors) {
      const py::array a = float32_input(py::reinterpret_borrow<py::array>(py::module_::import("numpy").attr("asarray")(v)),
                                        "TraceWriter.step");
      std::vector<std::uint64_t> shape(a.shape(), a.shape() + a.ndim());
      try {
        w_->add(py::str(k).cast<std::string>(), span_of<float>(a), shape, raw, hist);
      } catch (const trace_error& e) {
        throw py::value_error(e.what());
      }
    }
    w_->end_step();
  }
  void close() { w_.reset(); }

 private:
  trace_writer& live() {
    if (!w_) value_error("the trace writer is closed");
    return *w_;
  }
  std::unique_ptr<trace_writer> w_;
};


// ---- block quantization of a GEMM operand (issue 16; fpscope/block_quant.hpp) ----

template <class T>
py::array_t<T> grid(const std::vector<T>& v, std::size_t rows, std::size_t cols) {
  py::array_t<T> a({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
  std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

py::dict block_stats_dict(const block_stats& st) {
  py::dict d, counts, binades;
  for (int c = 0; c < cast_class_count; ++c) counts[py::str(std::string(name(static_cast<cast_class>(c))))] = st.counts.n[std::size_t(c)];
  for (const auto& [e, n] : st.scale_binades) binades[py::int_(e)] = n;
  for_each_stat(st, [&d](const char* key, auto v) { d[key] = v; });
  d["counts"] = counts;
  d["scale_binades"] = binades;
  return d;
}

// fpscope.quantize: a 2-D (or 1-D: one row) float array under a recipe, as `role` with blocks
// along `axis`.
py::dict quantize_array(const py::array& x_, const std::string& spec, const std::string& role, const std::string& axis) {
  const operand_role r = parse_role(role, "role");
  const block_axis a = parse_axis(axis, "axis");
  py::array x = float_input(x_, "quantize");
  if (!is_dtype(x, 'f', 4)) x = x.attr("astype")("float32").cast<py::array>();  // float64: rounded to nearest
  if (x.ndim() != 1 && x.ndim() != 2) value_error("quantize needs a 1-D or 2-D array, got " + std::to_string(x.ndim()) + " dimensions");
  const std::size_t rows = x.ndim() == 2 ? std::size_t(x.shape(0)) : 1, cols = std::size_t(x.shape(x.ndim() - 1));
  if (rows == 0 || cols == 0) value_error("quantize needs a non-empty array");
  const py::array xc = contiguous(x);
  block_quant_result q;
  {
    py::gil_scoped_release unlocked;
    q = block_quantize(span_of<float>(xc), rows, cols, spec, r, a);
  }
  py::dict d;
  d["recipe"] = q.describe;
  d["element"] = std::string(q.element.name);
  d["scale_format"] = std::string(q.scale_format.name);
  d["block_shape"] = py::make_tuple(q.block_rows, q.block_cols);
  d["codes"] = grid(q.codes, rows, cols);
  if (q.scale_format.bits == 8) {
    std::vector<std::uint8_t> c8(q.scale_codes.begin(), q.scale_codes.end());
    d["scales"] = grid(c8, q.scale_rows, q.scale_cols);
  } else {
    d["scales"] = grid(q.scale_codes, q.scale_rows, q.scale_cols);
  }
  d["scale_values"] = grid(q.scale_values, q.scale_rows, q.scale_cols);
  d["dequant_scale"] = grid(q.dequant_scale, q.scale_rows, q.scale_cols);
  d["tensor_scale"] = q.tensor_scale;
  py::array dq = grid(q.dequant, rows, cols);
  d["dequant"] = x.ndim() == 1 ? dq.attr("reshape")(cols).cast<py::array>() : dq;
  d["stats"] = block_stats_dict(q.stats);
  return d;
}

// fpscope.block_stats: the compact per-block statistics of a 2-D operand (fpscope/block_stats.hpp)
// as NumPy arrays, and back. The arrays are what a trace stores (docs/trace.md).
py::array_t<std::uint32_t> u32_array(const std::vector<std::uint32_t>& v) {
  py::array_t<std::uint32_t> a(py::ssize_t(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * 4);
  return a;
}
py::tuple sparse_arrays(const std::vector<std::pair<std::uint32_t, std::uint64_t>>& v) {
  py::array_t<std::uint32_t> k(py::ssize_t(v.size()));
  py::array_t<std::uint64_t> n(py::ssize_t(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) k.mutable_at(py::ssize_t(i)) = v[i].first, n.mutable_at(py::ssize_t(i)) = v[i].second;
  return py::make_tuple(k, n);
}

py::dict block_stats_py(const operand_block_stats& st) {
  py::dict d;
  d["shape"] = py::make_tuple(st.rows, st.cols);
  d["finite_amax"] = st.finite_amax;
  d["thresholds"] = u32_array(st.thresholds);
  py::list gl;
  for (const auto& gs : st.geometries) {
    py::dict e;
    e["block"] = py::make_tuple(gs.geometry.rows, gs.geometry.cols);
    e["elements"] = sparse_arrays(gs.elements);
    e["blocks"] = sparse_arrays(gs.blocks);
    e["minima"] = sparse_arrays(gs.minima);
    gl.append(e);
  }
  d["geometries"] = gl;
  return d;
}

operand_block_stats block_stats_of(const py::array& x_, const std::vector<block_geometry>& g, int threads) {
  py::array x = float_input(x_, "block_stats");
  if (!is_dtype(x, 'f', 4)) x = x.attr("astype")("float32").cast<py::array>();
  if (x.ndim() != 1 && x.ndim() != 2) value_error("block_stats needs a 1-D or 2-D array, got " + std::to_string(x.ndim()) + " dimensions");
  const std::size_t rows = x.ndim() == 2 ? std::size_t(x.shape(0)) : 1, cols = std::size_t(x.shape(x.ndim() - 1));
  if (rows == 0 || cols == 0) value_error("block_stats needs a non-empty array");
  const py::array xc = contiguous(x);
  py::gil_scoped_release unlocked;
  return compute_block_stats(span_of<float>(xc), rows, cols, g, threads);
}

py::dict block_stats_array(const py::array& x, const std::optional<std::vector<std::pair<std::uint32_t, std::uint32_t>>>& geoms,
                           int threads) {
  std::vector<block_geometry> g;
  if (geoms) for (const auto& [r, c] : *geoms) g.push_back({r, c});
  else g = default_block_geometries();
  return block_stats_py(block_stats_of(x, g, threads));
}

template <class T>
py::array_t<T> array_of(const std::vector<T>& v) {
  py::array_t<T> a(py::ssize_t(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(T));
  return a;
}

// The recorder's bstats_* datasets of a 2-D operand (docs/trace.md "Block statistics").
py::dict block_stats_datasets(const py::array& x, int threads) {
  const block_stats_arrays a = to_arrays(block_stats_of(x, default_block_geometries(), threads));
  py::dict d;
  d["bstats_shape"] = array_of(a.shape);
  d["bstats_thresholds"] = array_of(a.thresholds);
  d["bstats_geometry"] = array_of(a.geometry);
  d["bstats_lengths"] = array_of(a.lengths);
  d["bstats_keys"] = array_of(a.keys);
  d["bstats_counts"] = array_of(a.counts);
  return d;
}

template <class T>
std::vector<T> vector_of(const py::handle& h) {
  const auto a = h.cast<py::array_t<T, py::array::c_style | py::array::forcecast>>();
  if (a.ndim() != 1) value_error("block statistics: an array is not 1-D");
  return {a.data(), a.data() + a.size()};
}

// fpscope.block_stats' dict back into statistics, through the one checker (from_arrays).
operand_block_stats block_stats_from(const py::dict& d) {
  block_stats_arrays a;
  const auto shape = d["shape"].cast<std::pair<std::uint64_t, std::uint64_t>>();
  a.shape = {shape.first, shape.second};
  a.thresholds = vector_of<std::uint32_t>(d["thresholds"]);
  for (const auto& h : d["geometries"].cast<py::list>()) {
    const auto g = h.cast<py::dict>();
    const auto b = g["block"].cast<std::pair<std::uint32_t, std::uint32_t>>();
    a.geometry.push_back(b.first), a.geometry.push_back(b.second);
    for (const char* l : {"elements", "blocks", "minima"}) {
      const auto t = g[l].cast<py::tuple>();
      if (t.size() != 2) value_error(std::string("block statistics: ") + l + " is not a (keys, counts) pair");
      const auto k = vector_of<std::uint32_t>(t[0]);
      const auto n = vector_of<std::uint64_t>(t[1]);
      if (k.size() != n.size()) value_error(std::string("block statistics: ") + l + " keys and counts differ in length");
      a.lengths.push_back(k.size());
      a.keys.insert(a.keys.end(), k.begin(), k.end());
      a.counts.insert(a.counts.end(), n.begin(), n.end());
    }
  }
  return from_arrays(a, d["finite_amax"].cast<double>());
}

py::dict answer_block_stats_dict(const py::dict& stats, const std::string& spec, const std::string& role, const std::string& axis) {
  const operand_block_stats st = block_stats_from(stats);
  const block_stats_answer a = answer_block_stats(st, spec, parse_role(role, "role"), parse_axis(axis, "axis"));
  py::dict d, exact;
  d["recipe"] = a.describe;
  d["element"] = std::string(a.element.name);
  d["block_shape"] = py::make_tuple(a.block_rows, a.block_cols);
  d["low"] = block_stats_dict(a.low);
  d["high"] = block_stats_dict(a.high);
  for_each_bound(a, [&exact](const char* key, double lo, double hi) { exact[key] = lo == hi || (std::isnan(lo) && std::isnan(hi)); });
  for (int c = 0; c < cast_class_count; ++c)
    exact[py::str("counts." + std::string(name(static_cast<cast_class>(c))))] = a.low.counts.n[std::size_t(c)] == a.high.counts.n[std::size_t(c)];
  exact["scale_binades"] = a.low.scale_binades == a.high.scale_binades;
  d["exact_fields"] = exact;
  d["exact"] = a.exact();
  return d;
}
}  // namespace

PYBIND11_MODULE(_fpscope, m) {
  m.doc() = "fpscope: bit-exact low-precision floating point (C++ core)";
#if PYBIND11_VERSION_MAJOR == 2 && PYBIND11_VERSION_MINOR < 12
  // Built with a pybind11 that predates NumPy 2 (Debian 12's 2.10, where PyPI's was not at hand,
  // lib/python/CMakeLists.txt): it would misread every NumPy 2 array's dtype. Say so, at once.
  if (py::module_::import("numpy").attr("__version__").cast<std::string>().rfind("1.", 0) != 0)
    throw py::import_error("fpscope: this module was built with pybind11 " PYBIND11_TOSTRING(PYBIND11_VERSION_MAJOR) "." PYBIND11_TOSTRING(
        PYBIND11_VERSION_MINOR) ", which cannot read NumPy 2 arrays; rebuild it with pybind11 >= 2.12 (pip install pybind11, or pip install .)");
#endif
  // A bad trace, or one that crashes or hangs libhdf5 in the worker: ValueError, as a bad value.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const contained_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const trace_error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  add_mma_bindings(m);  // tensor-core models (mma_module.cpp)
  m.def("formats", [] {
    std::vector<std::string> v;
    for (int i = 0; i < builtin_count; ++i) v.emplace_back(builtin(static_cast<format_id>(i)).name);
    return v;
  }, "Names of the built-in formats, in `fpscope formats` order.");
  m.def("format_info", [](const std::string& n) { return format_info(lookup_format(n)); }, py::arg("name"),
        "A format's properties as a dict (name or alias).");
  m.def("profiles", [] { return std::vector<std::string>{"ieee", "cuda", "avx512bf16", "ml_dtypes"}; });
  m.def("roundings", [] { return std::vector<std::string>{"rne", "rtz", "rup", "rdn", "rna", "rto", "sr"}; });
  m.def("policy_info", [](const std::string& fmt, const std::string& prof, const std::optional<std::string>& round,
                          const std::optional<std::string>& ovf, std::uint64_t seed) {
    const format f = lookup_format(fmt);
    const policy p = resolve(f, prof, round, ovf, seed);
    py::dict d;
    d["rounding"] = std::string(name(p.round));
    d["overflow"] = std::string(name(p.on_overflow));
    d["saturate_inf"] = p.saturate_inf;
    d["daz"] = p.daz;
    d["ftz"] = p.ftz;
    d["seed"] = p.seed;
    return d;
  }, py::arg("fmt"), py::arg("profile") = "ieee", py::arg("rounding") = py::none(), py::arg("overflow") = py::none(),
        py::arg("seed") = 0, "The resolved policy of a format under a profile and overrides.");

  m.def("cast", &cast_scalar, py::arg("x"), py::arg("fmt"), py::kw_only(), py::arg("profile") = "ieee",
        py::arg("rounding") = py::none(), py::arg("overflow") = py::none(), py::arg("seed") = 0, py::arg("scale") = 1.0,
        py::arg("index") = 0, "One float64 value times scale, rounded once: (bits, value, flags dict).");
  m.def("encode", &encode_array, py::arg("x"), py::arg("fmt"), py::kw_only(), py::arg("profile") = "ieee",
        py::arg("rounding") = py::none(), py::arg("overflow") = py::none(), py::arg("seed") = 0,
        py::arg("scale") = 1.0, py::arg("first_index") = 0, py::arg("threads") = 0, py::arg("out") = py::none(),
        "float16/32/64 array -> uint8/16/32 codes (same shape), into `out` when given.");
  m.def("decode", &decode_array, py::arg("bits"), py::arg("fmt"), py::kw_only(), py::arg("dtype") = "float32",
        py::arg("out") = py::none(), "Codes -> exact float32 (or float64) values, into `out` when given.");
  m.def("apply", &apply_array, py::arg("op"), py::arg("a"), py::arg("b") = py::none(), py::arg("c") = py::none(),
        py::kw_only(), py::arg("fmt"), py::arg("profile") = "ieee", py::arg("rounding") = py::none(),
        py::arg("overflow") = py::none(), py::arg("seed") = 0, py::arg("first_index") = 0, py::arg("threads") = 0,
        py::arg("out") = py::none(),
        "Elementwise op ('add', 'sub', 'mul', 'div', 'sqrt', 'fma' = a*b+c, 'min', 'max') on code arrays of fmt\n"
        "(broadcast like NumPy), each result the exact one rounded once: codes, into `out` when given.");
  m.def("classify", &classify_array, py::arg("bits"), py::arg("fmt"),
        "Codes -> value class (0 zero, 1 subnormal, 2 normal, 3 infinite, 4 nan: VALUE_CLASSES), uint8.");
  // The library's class names, in enum order: value classes (classify) and cast classes
  // (class_counts' keys).
  py::list value_classes, cast_classes;
  for (int c = 0; c < value_class_count; ++c) value_classes.append(std::string(name(static_cast<value_class>(c))));
  for (int c = 0; c < cast_class_count; ++c) cast_classes.append(std::string(name(static_cast<cast_class>(c))));
  m.attr("VALUE_CLASSES") = py::tuple(value_classes);
  m.attr("CLASSES") = py::tuple(cast_classes);

  m.def("class_counts", &class_counts_array, py::arg("x"), py::arg("fmt"), py::arg("scales") = std::vector<double>{1.0},
        py::kw_only(), py::arg("profile") = "ieee", py::arg("rounding") = py::none(), py::arg("overflow") = py::none(),
        py::arg("threads") = 0,
        "Exact counts of zero/underflow/subnormal/normal/overflow/nonfinite per scale (docs/hist.md).");
  m.def("class_counts_histogram", &class_counts_histogram, py::arg("keys"), py::arg("counts"), py::arg("fmt"),
        py::arg("scales") = std::vector<double>{1.0}, py::kw_only(), py::arg("profile") = "ieee",
        py::arg("rounding") = py::none(), py::arg("overflow") = py::none(),
        "class_counts from a sparse bucket histogram; 'exact' is False where a boundary split a bucket.");
  m.def("bucket_histogram", &bucket_histogram_array, py::arg("x"), py::arg("threads") = 0,
        "The exact sparse bucket histogram of float32 values: (keys uint32, counts uint64).");
  m.def("tensor_summary", &summary_array, py::arg("x"), py::arg("threads") = 0,
        "A tensor's trace attributes and exact sparse bucket histogram in one call: (keys uint32, counts "
        "uint64, {'count', 'amax', 'zeros', 'infs', 'nans'}); amax is over the finite values (docs/trace.md).");
  m.def("binades", &binades_array, py::arg("x"),
        "floor(log2|x|) of the nonzero finite float32 values: (exponents int32, counts uint64).");
  m.def("histogram_binades", &binades_histogram, py::arg("keys"), py::arg("counts"),
        "binades() of a sparse bucket histogram.");

  m.def("sweep", &sweep_array, py::arg("x"), py::arg("fmt"), py::kw_only(), py::arg("profile") = "ieee",
        py::arg("rounding") = py::none(), py::arg("overflow") = py::none(), py::arg("threads") = 0,
        "Exact class counts at every float32 normal power of two 2^-126 .. 2^127 (a dict of arrays\n"
        "indexed alike: log2_scale, scale, and one array per class): the sweep hist recommends from.");
  m.def("recommend", &recommend_dict, py::arg("sweep"), py::arg("headroom") = 1,
        "The scales worth using from a sweep(): 'gradscaler' (the largest power of two without overflow,\n"
        "less `headroom` binades) and 'fewest_lost' (fewest underflow + overflow, then fewest subnormal;\n"
        "the middle of a tied run), each a dict with log2_scale, scale and the class counts, or None.");
  m.def("_replay", &replay_trace, py::arg("path"), py::arg("policy"), py::arg("format"), py::arg("profile"),
        py::arg("rounding"), py::arg("overflow"), py::arg("steps"), py::arg("threads"), py::arg("top"), py::arg("tensors"),
        py::arg("amax_group"));
  m.def("_merge", &merge_traces, py::arg("paths"), py::arg("out"), py::arg("histograms"), py::arg("threads"));
  m.def("recipes", [] {
    py::list l;
    for (const auto& r : recipes()) {
      py::dict d;
      d["name"] = std::string(r.name);
      d["summary"] = std::string(r.summary);
      d["keys"] = r.keys;
      d["models"] = std::string(r.models);
      l.append(d);
    }
    return l;
  }, "The replay recipes: name, summary, the grammar of their keys, what upstream path they model.");
  m.def("_recipes_report", &recipes_report_json, py::arg("path"), py::arg("recipes"), py::arg("step"), py::arg("budget"),
        "The recipes report over a trace's GEMM operands, as JSON text; fpscope.recipes_report wraps it.");
  m.def("default_block_recipes", [] {
    std::vector<std::string> out;
    for (const auto d : default_block_recipes()) out.emplace_back(d);
    return out;
  }, "The recipes `fpscope recipes` and recipes_report compare when none are named.");
  m.def("_quantize", &quantize_array, py::arg("x"), py::arg("recipe"), py::arg("role") = "input", py::arg("axis") = "row",
        "Block quantization of a GEMM operand (fpscope/block_quant.hpp); fpscope.quantize wraps it.");

  m.def("_block_stats", &block_stats_array, py::arg("x"), py::arg("geometries") = py::none(), py::arg("threads") = 0,
        "Per-block statistics of a 2-D operand (fpscope/block_stats.hpp); fpscope.block_stats wraps it.");
  m.def("block_stats_datasets", &block_stats_datasets, py::arg("x"), py::arg("threads") = 0,
        "The recorder's bstats_* trace datasets of a 2-D operand (docs/trace.md \"Block statistics\").");
  m.def("_answer_block_stats", &answer_block_stats_dict, py::arg("stats"), py::arg("recipe"), py::arg("role") = "input",
        py::arg("axis") = "row", "A recipe's statistics from block statistics; fpscope.answer_block_stats wraps it.");

  py::class_<trace>(m, "Trace", "A gradient trace (docs/trace.md), read step by step.")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def(py::init<const std::vector<std::string>&, bool, int>(), py::arg("paths"), py::kw_only(),
           py::arg("histograms") = false, py::arg("threads") = 0,
           "The rank traces of one distributed run, as one run (merged in memory, as `fpscope trace merge`).")
      .def("__len__", &trace::size)
      .def_property_readonly("path", &trace::path)
      .def_property_readonly("producer", &trace::producer)
      .def_property_readonly("model", &trace::model)
      .def_property_readonly("incomplete", &trace::incomplete)
      .def_property_readonly("layout", &trace::layout, "the rank layout of a distributed run's trace (docs/trace.md), or None")
      .def("step", &trace::step, py::arg("i"), "Step i's metadata and its tensors' metadata (a dict).")
      .def("values", &trace::values, py::arg("i"), py::arg("tensor"), "A tensor's values, widened exactly to float32.")
      .def("histogram", &trace::histogram, py::arg("i"), py::arg("tensor"), "A tensor's sparse histogram (keys, counts).")
      .def("block_stats", &trace::block_stats, py::arg("i"), py::arg("tensor"),
           "A tensor's per-block statistics (docs/trace.md \"Block statistics\"), as fpscope.block_stats returns them: "
           "fpscope.answer_block_stats answers a recipe from them.");

  py::class_<writer>(m, "TraceWriter", "Writes a trace (docs/trace.md) step by step: fpscope::trace_writer.")
      .def(py::init<const std::string&, const std::string&, const std::string&, bool>(), py::arg("path"),
           py::arg("producer") = "fpscope python", py::arg("model") = "", py::arg("overwrite") = false)
      .def("step", &writer::step, py::arg("step"), py::arg("loss"), py::arg("lr"), py::arg("loss_scale") = 1.0,
           py::arg("tensors") = py::dict(), py::arg("raw") = true, py::arg("hist") = false,
           "Writes one complete step: tensors maps names to float32 arrays (gradients, unscaled).")
      .def("close", &writer::close)
      .def("__enter__", [](writer& w) -> writer& { return w; })
      .def("__exit__", [](writer& w, const py::args&) { w.close(); });

  m.attr("flag_inexact") = static_cast<unsigned>(flag_inexact);
  m.attr("flag_underflow") = static_cast<unsigned>(flag_underflow);
  m.attr("flag_overflow") = static_cast<unsigned>(flag_overflow);
  m.attr("flag_invalid") = static_cast<unsigned>(flag_invalid);
}
