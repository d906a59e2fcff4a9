// Gradient traces: the HDF5 format of docs/trace.md, read step by step (never the whole file)
// and written step by step (flushed after each). Target fpscope::trace (links HDF5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fpscope {

struct operand_block_stats;  // fpscope/block_stats.hpp

struct tensor_summary;

/// Every problem with a trace file: one line naming the file (and step, tensor) and the problem.
class trace_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The element types a trace stores; all but float32 as raw bits.
enum class trace_dtype : std::uint8_t { float32, float16, bfloat16, e4m3, e5m2 };
/// "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2".
std::string_view name(trace_dtype t);
std::optional<trace_dtype> find_trace_dtype(std::string_view s);

inline constexpr int trace_version = 1;
/// The minor version this library writes and reads (docs/trace.md): 1 adds the rank layout in
/// the root and shard descriptions on tensors ("Multi-rank traces"); 2 adds GEMM operand roles
/// on tensors ("GEMM operands"). A file without @fpscope_trace_minor is minor 0; a reader of
/// major version 1 reads every minor version.
inline constexpr int trace_minor_version = 2;

/// Which GEMM operand a recorded tensor is (minor version 2): a layer's forward input X
/// (tokens x in), its weight W (out x in), its output gradient dY (tokens x out), or its weight
/// gradient dW (out x in; the parameter gradient, the wgrad GEMM's result).
enum class trace_role : std::uint8_t { input, weight, grad, wgrad };
/// "input", "weight", "grad", "wgrad" (the @role strings).
std::string_view name(trace_role r);
std::optional<trace_role> find_trace_role(std::string_view s);

/// A tensor's GEMM operand description (tensor attributes @role, @layer, @gemm_shape of minor
/// version 2): the reader checked rows * cols == @count and cols == the last dimension of @shape,
/// and, within a step, that a layer has each role once and that its operands' shapes agree
/// (X rows == dY rows, X cols == W cols, dY cols == W rows, dW's shape == W's).
struct trace_operand {
  std::string layer;  ///< the module's name (model.named_modules())
  trace_role role = trace_role::input;
  std::uint64_t rows = 0, cols = 0;  ///< the 2-D GEMM shape
};

/// A rank's place in a distributed run (root attributes of minor version 1): its rank in the
/// world and, where recorded, its coordinates in the data-, tensor- and pipeline-parallel groups.
struct trace_layout {
  struct coord {
    std::int64_t rank = 0, size = 1;
    bool operator==(const coord&) const = default;
  };
  std::int64_t rank = 0, world_size = 1;
  std::optional<coord> dp, tp, pp;
};

/// Which part of a logical tensor a recorded tensor holds (tensor attributes of minor version 1).
/// A tensor without one holds its logical tensor whole (a replica, under data parallelism).
struct trace_shard {
  enum class kind : std::uint8_t { flat, split };
  std::string logical_name;
  std::vector<std::uint64_t> logical_shape;
  kind how = kind::flat;
  /// flat: elements [offset, offset + count) of the logical tensor flattened in C order (ZeRO,
  /// FSDP's flat parameters).
  std::uint64_t offset = 0;
  /// split: part `index` of `parts` equal parts along dimension `dim` (tensor parallelism;
  /// torch.chunk of a dimension that `parts` divides).
  std::uint32_t dim = 0, index = 0, parts = 1;
};

/// A tensor's metadata (attributes) in one step.
struct trace_tensor {
  std::string name;   ///< unescaped
  std::string group;  ///< the HDF5 link name (escaped)
  trace_dtype dtype = trace_dtype::float32;
  std::vector<std::uint64_t> shape;
  std::uint64_t count = 0;
  double amax = 0;
  std::uint64_t zeros = 0, infs = 0, nans = 0;
  bool has_values = false, has_hist = false;
  bool has_block_stats = false;  ///< the optional bstats_* datasets (docs/trace.md "Block statistics")
  std::optional<trace_shard> shard;  ///< minor version 1; none: the whole logical tensor
  std::optional<trace_operand> operand;  ///< minor version 2; none: not a recorded GEMM operand
};

/// A step's metadata and its tensors, in recording order (name order where the file does not
/// track creation order).
struct trace_step {
  std::string group;  ///< "00000010"
  std::int64_t step = 0;
  double loss = 0, lr = 0, loss_scale = 1;
  std::vector<trace_tensor> tensors;
};

/// Reads a trace. Opens read-only; refuses external links, external storage and virtual
/// datasets (it reads only the file it was given); checks every attribute, type and size.
class trace_reader {
 public:
  explicit trace_reader(const std::string& path);
  /// Reads a trace held in memory: the bytes of an HDF5 file (copied), as trace_merge's merge()
  /// makes one. `name` is what messages call it. The same checks as a file's.
  trace_reader(std::string_view image, const std::string& name);
  ~trace_reader();
  trace_reader(const trace_reader&) = delete;
  trace_reader& operator=(const trace_reader&) = delete;

  const std::string& path() const { return path_; }
  const std::string& producer() const { return producer_; }
  const std::string& model() const { return model_; }
  /// @fpscope_trace_minor (0 when absent).
  int minor_version() const { return minor_; }
  /// The rank layout (root @rank, @world_size, @dp_rank ...), when recorded.
  const std::optional<trace_layout>& layout() const { return layout_; }
  /// The complete steps, in order.
  std::size_t size() const { return steps_.size(); }
  /// Steps found incomplete (a writer killed mid-step), as messages; not in size().
  const std::vector<std::string>& incomplete() const { return incomplete_; }
  /// Step i's @step (from its group's name, which the reader checked against @step on opening).
  std::int64_t step_number(std::size_t i) const;
  /// Reads step i's metadata (cheap: attributes only).
  trace_step step(std::size_t i) const;
  /// Streams a tensor's values, widened exactly to float32, in chunks of at most `chunk`.
  void values(const trace_step& s, const trace_tensor& t, const std::function<void(std::span<const float>)>& f,
              std::size_t chunk = std::size_t{1} << 20) const;
  /// Streams the values of several tensors of step s (each with raw values) at once: the
  /// compressed storage chunks are located through HDF5's chunk index, then read, inflated,
  /// unshuffled and widened to float32 on `threads` OpenMP threads (0: all), each thread holding
  /// one stored chunk at a time (and keeping its buffers for the next call). f(i, offset,
  /// values) receives tensors[i]'s values [offset, offset + values.size()); it is called
  /// concurrently and in no set order, every value exactly once. Datasets stored in any other
  /// way than chunked little-endian with (shuffle +) deflate, or files not opened through
  /// HDF5's default (sec2) driver, go through values(). `budget` is unused (it bounded the
  /// stored bytes in flight when one thread read every chunk; kept so that callers compile).
  void values_parallel(const trace_step& s, std::span<const trace_tensor* const> tensors,
                       const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                       int threads = 0, std::size_t budget = std::size_t{64} << 20) const;
  /// Whether values_parallel() decodes this tensor's storage chunks itself (else: H5Dread).
  bool decodes_chunks(const trace_step& s, const trace_tensor& t) const;
  /// A tensor's sparse bucket histogram (sorted keys, counts).
  std::vector<std::pair<std::uint32_t, std::uint64_t>> histogram(const trace_step& s, const trace_tensor& t) const;
  /// A tensor's per-block statistics (fpscope/block_stats.hpp), every bound checked (from_arrays);
  /// trace_error without them.
  operand_block_stats block_stats(const trace_step& s, const trace_tensor& t) const;

 private:
  void read_root();  // what both constructors check once the file is open
  struct handle;
  std::string path_, producer_, model_;
  int minor_ = 0;
  std::optional<trace_layout> layout_;
  std::unique_ptr<handle> h_;
  std::vector<std::string> steps_, incomplete_;
};

/// Writes a trace step by step: begin_step, add tensors, end_step (which flushes the file).
/// Creates the file (an existing one is an error unless `overwrite`).
///
/// Safe against being killed (docs/trace.md, "Writing safely"; the rules of the Python recorder):
/// when end_step() returns, the step is on disk, and a process killed at any moment after the
/// constructor returned leaves a file that opens and holds every step end_step() returned from,
/// each whole, and at most one more (whole too). Each step is built as an unlinked group,
/// flushed, then linked into /steps (one in-place write: its link storage is allocated up front
/// for `max_steps` steps, about 40 bytes each) and flushed again. This holds for up to
/// `max_steps` steps (1..65535); past that the file stays valid but appending a step is no longer
/// a single write, and the writer says so once on stderr. tests/record/test_crash_trace_writer.py
/// checks it at every write of a run. Not covered: power loss or an OS crash.
class trace_writer {
 public:
  trace_writer(const std::string& path, const std::string& producer, const std::string& model,
               bool overwrite = false, std::size_t max_steps = 4096);
  /// A trace built in memory (HDF5's core driver, no file): image() gives its bytes, for a
  /// caller that writes them through output_file (fpscope/output.hpp), e.g. `trace merge`.
  struct in_memory {};
  trace_writer(in_memory, const std::string& producer, const std::string& model, std::size_t max_steps = 4096);
  /// The whole file as it stands (in_memory writers only; trace_error otherwise).
  std::string image() const;
  ~trace_writer();
  trace_writer(const trace_writer&) = delete;
  trace_writer& operator=(const trace_writer&) = delete;

  /// Starts a step (an error if this step is already in the file). A step begun and not ended
  /// is dropped: begin_step again or destroy the writer.
  void begin_step(std::int64_t step, double loss, double lr, double loss_scale = 1);
  /// float32 values: raw and/or their bucket histogram. Tensors are listed in the order added.
  void add(const std::string& name, std::span<const float> values, std::vector<std::uint64_t> shape, bool raw = true,
           bool hist = false);
  /// A histogram-only tensor from its summary (e.g. the sum of its shards'): float32, `s.hist`
  /// as hist_keys/hist_counts, the counts and amax as attributes; s.count must be the shape's product.
  void add_summary(const std::string& name, const tensor_summary& s, std::vector<std::uint64_t> shape);
  /// Marks the step complete and links it into the file: on disk when this returns.
  void end_step();
  /// The steps written (end_step() returned) so far.
  std::size_t steps_written() const;
  std::size_t max_steps() const;

 private:
  void write_tensor(const std::string& name, const tensor_summary& s, std::vector<std::uint64_t> shape,
                    const std::span<const float>* values, bool hist);
  struct handle;
  std::string path_;
  std::unique_ptr<handle> h_;
};

}  // namespace fpscope
