// The trace writer (docs/trace.md, "Writing safely").
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fpscope/summary.hpp"
#include "fpscope/trace.hpp"
#include "trace_hdf5.hpp"

namespace fpscope {
using namespace trace_detail;

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
  std::int64_t building = 0;
  std::optional<std::int64_t> last;  // the last step linked: steps must increase (docs/trace.md)
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
// then trimmed back (the Python recorder's Recorder._flush). No descriptor (fd < 0): an
// in-memory file, nothing to keep safe.
void flush(hid_t file, int fd, const std::string& path) {
  if (fd < 0) {
    if (H5Fflush(file, H5F_SCOPE_LOCAL) < 0) throw trace_error(path + ": cannot flush");
    return;
  }
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

namespace {

// The file access properties of both writers; `core`: HDF5's in-memory driver, no backing file.
id writer_fapl(bool core) {
  id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (core) H5Pset_fapl_core(fapl, std::size_t{1} << 20, 0);
  return fapl;
}

}  // namespace

trace_writer::trace_writer(in_memory, const std::string& producer, const std::string& model, std::size_t max_steps)
    : trace_writer(std::string(), producer, model, true, max_steps) {}

std::string trace_writer::image() const {
  quiet_hdf5();
  if (h_->fd >= 0) throw trace_error(path_ + ": image() of a writer to a file");
  if (H5Fflush(h_->file, H5F_SCOPE_LOCAL) < 0) throw trace_error("in-memory trace: cannot flush");
  const ssize_t n = H5Fget_file_image(h_->file, nullptr, 0);
  if (n < 0) throw trace_error("in-memory trace: cannot get its image");
  std::string out(std::size_t(n), '\0');
  if (H5Fget_file_image(h_->file, out.data(), out.size()) != n) throw trace_error("in-memory trace: cannot copy its image");
  return out;
}

trace_writer::trace_writer(const std::string& path, const std::string& producer, const std::string& model,
                           bool overwrite, std::size_t max_steps)
    : path_(path.empty() ? "in-memory trace" : path), h_(std::make_unique<handle>()) {
  quiet_hdf5();
  const bool core = path.empty();  // the in_memory constructor's
  if (max_steps < 1 || max_steps > 65535)
    throw trace_error(path_ + ": max_steps must be in 1..65535, not " + std::to_string(max_steps));
  h_->max_steps = max_steps;
  // A name unique in this process: HDF5 refuses to create a core file under a name it has open.
  static std::atomic<unsigned long> serial{0};
  const std::string name = core ? "fpscope-in-memory-" + std::to_string(serial++) + ".h5" : path;
  const id fapl = writer_fapl(core), fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_EARLIEST, H5F_LIBVER_V18);  // rule 3
  // Chunk index B-trees of rank 2, not 1: under rank 1 libhdf5 1.10.8 writes a dataset of more
  // than 256 chunks that it cannot read back, and fails on ~1000 (docs/trace.md).
  H5Pset_istore_k(fcpl, 2);
  h_->file = id(H5Fcreate(name.c_str(), overwrite ? H5F_ACC_TRUNC : H5F_ACC_EXCL, fcpl, fapl), H5Fclose);
  if (!h_->file.ok()) throw trace_error(path_ + ": cannot create (exists, or the directory is not writable)");
#if H5_VERSION_GE(1, 10, 5)
  H5Fset_dset_no_attrs_hint(h_->file, 1);
#endif
  void* vfd = nullptr;
  if (!core && (H5Fget_vfd_handle(h_->file, H5P_DEFAULT, &vfd) < 0 || !vfd))
    throw trace_error(path_ + ": cannot get the file descriptor");
  if (!core) h_->fd = *static_cast<int*>(vfd);
  const std::int32_t v = trace_version;
  write_attr(h_->file, "fpscope_trace_version", H5T_STD_I32LE, &v);
  const std::int32_t minor = trace_minor_version;  // docs/trace.md, "Multi-rank traces"
  write_attr(h_->file, "fpscope_trace_minor", H5T_STD_I32LE, &minor);
  write_text(h_->file, "producer", producer);
  write_text(h_->file, "model", model);
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  write_text(h_->file, "created", buf);
  h_->steps = make_group(h_->file, "steps", max_steps, 8);  // rule 2
  if (!h_->steps.ok()) throw trace_error(path_ + ": cannot create /steps");
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
  // What the reader refuses (docs/trace.md), refused here before anything is written.
  if (step < 0) throw trace_error(path_ + ": step " + std::to_string(step) + " is negative");
  if (h_->last && step <= *h_->last)
    throw trace_error(path_ + ": step " + std::to_string(step) + " after step " + std::to_string(*h_->last) +
                      ": steps must be recorded in increasing order");
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
  h_->building = step;
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
  write_tensor(name, summarize(values, 1), std::move(shape), raw ? &values : nullptr, hist);
}

void trace_writer::add_summary(const std::string& name, const tensor_summary& s, std::vector<std::uint64_t> shape) {
  quiet_hdf5();
  if (!h_->tensors.ok()) throw trace_error(path_ + ": add_summary() outside a step");
  long double product = 1;
  for (const auto e : shape) product *= (long double)e;
  if (product != (long double)s.count) throw trace_error(path_ + ": tensor " + name + ": count is not the shape's product");
  write_tensor(name, s, std::move(shape), nullptr, true);
}

void trace_writer::write_tensor(const std::string& name, const tensor_summary& s, std::vector<std::uint64_t> shape,
                                const std::span<const float>* values, bool hist) {
  const std::string link = escape(name);
  if (H5Lexists(h_->tensors, link.c_str(), H5P_DEFAULT) != 0)
    throw trace_error(path_ + ": cannot create tensor " + name + " (a duplicate name?)");
  const id g = make_group(h_->tensors, link.c_str(), 3, 11);
  if (!g.ok()) throw trace_error(path_ + ": cannot create tensor " + name);
  write_text(g, "dtype", "float32");
  write_attr(g, "shape", H5T_STD_I64LE, shape.data(), shape.size(), true);
  write_attr(g, "count", H5T_STD_U64LE, &s.count);
  write_attr(g, "amax", H5T_IEEE_F64LE, &s.amax);
  write_attr(g, "zeros", H5T_STD_U64LE, &s.zeros);
  write_attr(g, "infs", H5T_STD_U64LE, &s.infs);
  write_attr(g, "nans", H5T_STD_U64LE, &s.nans);
  if (values) write_dataset(g, "values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, *values);
  if (hist) {
    std::vector<std::uint32_t> keys;
    std::vector<std::uint64_t> counts;
    for (const auto& [k, n] : s.hist.sparse()) keys.push_back(k), counts.push_back(n);
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
  h_->last = h_->building;
}

}  // namespace fpscope
