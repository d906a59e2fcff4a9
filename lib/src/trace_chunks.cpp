#include "trace_chunks.hpp"

#include <omp.h>
#include <libdeflate.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <type_traits>
#include <vector>

#include "fpscope/convert.hpp"

namespace fpscope::trace_detail {

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

std::optional<stored_file> stored_file_of(hid_t file) {
  const id fapl(H5Fget_access_plist(file), H5Pclose), fcpl(H5Fget_create_plist(file), H5Pclose);
  if (!fapl.ok() || !fcpl.ok() || H5Pget_driver(fapl) != H5FD_SEC2) return std::nullopt;
  void* handle = nullptr;
  hsize_t user_block = 0;
  if (H5Fget_vfd_handle(file, H5P_DEFAULT, &handle) < 0 || !handle || H5Pget_userblock(fcpl, &user_block) < 0)
    return std::nullopt;
  // HDF5 addresses count from the superblock, which follows the user block (HDF5 1.10
  // H5F__super_read: the base address is where the superblock was found).
  return stored_file{*static_cast<const int*>(handle), user_block};
}

namespace {

// One stored chunk as the chunk index records it: whose values, and where its bytes lie.
struct planned_chunk {
  const chunk_source* src;
  std::uint64_t offset, count;  // elements
  std::uint64_t at;             // file offset
  std::size_t bytes;            // as stored (filtered)
  unsigned mask;                // bit i: pipeline filter i was skipped for this chunk
};

// Reads n bytes at file offset `at`; false on an error or a file that ends first.
bool read_at(int fd, std::uint8_t* to, std::size_t n, std::uint64_t at) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, to, n, off_t(at));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    to += got, n -= std::size_t(got), at += std::uint64_t(got);
  }
  return true;
}

// HDF5's shuffle stores byte b of every element together: plane b (`plane` bytes long) holds
// element i's byte b at i. Puts the first out.size() elements back together (little-endian
// bytes), as words the compiler vectorises, not byte by byte.
template <class T>  // float (float32) or std::uint16_t (float16 / bfloat16 bits)
void unshuffle(const std::uint8_t* p, std::size_t plane, std::span<T> out) {
  using word = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint16_t>;
  for (std::size_t i = 0; i < out.size(); ++i) {
    word w = 0;
    for (std::size_t b = 0; b < sizeof(T); ++b) w = word(w | word(p[b * plane + i]) << (8 * b));
    out[i] = std::bit_cast<T>(w);
  }
}

// One thread's decoder: its libdeflate decompressor (which no two threads may share) and its
// buffers, reused chunk after chunk.
class chunk_decoder {
 public:
  chunk_decoder() : d_(libdeflate_alloc_decompressor()) {
    if (!d_) throw std::bad_alloc();
  }

  // Reads a stored chunk, inflates and unshuffles it and widens its `count` values to float32.
  // Touches no HDF5 state (any thread). nullopt when the bytes cannot be read or do not decode to
  // a whole chunk.
  std::optional<std::span<const float>> decode(const stored_file& file, const planned_chunk& c) {
    const raw_layout& l = c.src->l;
    const trace_dtype dt = c.src->t->dtype;
    const std::size_t size = storage(dt).second, whole = l.chunk * size;
    stored_.resize(c.bytes);
    if (!read_at(file.fd, stored_.data(), c.bytes, file.base + c.at)) return std::nullopt;
    const bool shuffled = l.shuffle >= 0 && !(c.mask >> l.shuffle & 1) && size > 1;
    out_.resize(l.chunk);
    const std::uint8_t* p = stored_.data();
    if (l.deflate >= 0 && !(c.mask >> l.deflate & 1)) {
      // Unshuffled float32 inflates straight into the values.
      std::uint8_t* to = dt == trace_dtype::float32 && !shuffled ? reinterpret_cast<std::uint8_t*>(out_.data())
                                                                 : (inflated_.resize(whole), inflated_.data());
      // HDF5's deflate filter writes zlib streams: libdeflate checks the header and the Adler-32
      // of the data, and (no actual-size argument) that they inflate to exactly `whole` bytes.
      if (libdeflate_zlib_decompress(d_.get(), p, c.bytes, to, whole, nullptr) != LIBDEFLATE_SUCCESS)
        return std::nullopt;
      p = to;
    } else if (c.bytes != whole) {
      return std::nullopt;
    }
    const std::span<float> out(out_.data(), c.count);
    switch (dt) {
      case trace_dtype::float32:
        if (shuffled) unshuffle(p, l.chunk, out);
        else if (p != reinterpret_cast<const std::uint8_t*>(out_.data())) std::memcpy(out.data(), p, c.count * 4);
        break;
      case trace_dtype::float16:
      case trace_dtype::bfloat16:
        bits_.resize(c.count);
        if (shuffled) unshuffle(p, l.chunk, std::span<std::uint16_t>(bits_));
        else std::memcpy(bits_.data(), p, c.count * 2);
        fpscope::decode(std::span<const std::uint16_t>(bits_), out,
                        builtin(dt == trace_dtype::float16 ? format_id::fp16 : format_id::bf16));
        break;
      default:
        fpscope::decode(std::span<const std::uint8_t>(p, c.count), out,
                        builtin(dt == trace_dtype::e4m3 ? format_id::e4m3 : format_id::e5m2));
    }
    return out;
  }

 private:
  struct free_decompressor {
    void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
  };
  std::unique_ptr<libdeflate_decompressor, free_decompressor> d_;
  std::vector<std::uint8_t> stored_, inflated_;
  std::vector<std::uint16_t> bits_;
  std::vector<float> out_;
};

}  // namespace

void read_stored_chunks(const stored_file& file, std::span<const chunk_source> sources,
                        const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                        int threads) {
  const auto corrupt = [&](const chunk_source& src, std::uint64_t lo, std::uint64_t n) {
    return std::make_exception_ptr(trace_error(src.where + ": cannot read values " + std::to_string(lo) + ".." +
                                               std::to_string(lo + n) + " (corrupt data?)"));
  };
  // The plan, from HDF5's chunk index on this thread (one caller in HDF5 at a time): every
  // chunk's place in the file, in reading order, up to the first that cannot be read.
  std::vector<planned_chunk> plan;
  std::exception_ptr plan_failed;
  for (const chunk_source& src : sources) {
    const std::size_t whole = src.l.chunk * storage(src.t->dtype).second;
    // deflate's worst case (zlib's compressBound) and a little: a larger stored chunk is not ours to read.
    const std::size_t most_bytes = whole + whole / 1000 + 64;
    for (std::uint64_t lo = 0; lo < src.t->count && !plan_failed; lo += src.l.chunk) {
      const hsize_t at = lo;
      unsigned mask = 0;
      haddr_t addr = HADDR_UNDEF;
      hsize_t nbytes = 0;
      const std::uint64_t count = std::min<std::uint64_t>(src.l.chunk, src.t->count - lo);
      if (H5Dget_chunk_info_by_coord(src.ds, &at, &mask, &addr, &nbytes) < 0 || addr == HADDR_UNDEF || nbytes == 0 ||
          nbytes > most_bytes)
        plan_failed = corrupt(src, lo, count);
      else
        plan.push_back({&src, lo, count, addr, std::size_t(nbytes), mask});
    }
    if (plan_failed) break;
  }

  // Then each thread takes the next chunk in the plan: reads it (pread: no HDF5, no shared file
  // offset), inflates, unshuffles, widens and passes it on. Reading is spread over the threads
  // too (one thread reading every chunk was the bottleneck once inflating got fast), and each
  // holds one chunk at a time. After a failure the chunks not yet begun are skipped; the failure
  // thrown is the first in reading order of those found.
  const auto want = std::size_t(std::max(1, threads > 0 ? threads : omp_get_max_threads()));
  const int nt = int(std::max<std::size_t>(1, std::min(want, plan.size())));  // no more threads than chunks
  std::mutex m;
  std::size_t first_seq = ~std::size_t{0};
  std::exception_ptr first;
  std::atomic<bool> stop{false};
  const auto failed = [&](std::size_t seq, std::exception_ptr e) {
    const std::lock_guard lock(m);
    if (seq < first_seq) first_seq = seq, first = std::move(e);
    stop = true;
  };
  if (!plan.empty()) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (std::size_t k = 0; k < plan.size(); ++k) {
      if (stop) continue;
      const planned_chunk& c = plan[k];
      try {  // nothing may leave an OpenMP region by an exception
        // One decoder per thread, kept from call to call (OpenMP keeps its threads): its buffers
        // are the size the next step's chunks need, already allocated.
        thread_local chunk_decoder decoder;
        if (const auto v = decoder.decode(file, c))
          f(c.src->index, c.offset, *v);
        else
          failed(k, corrupt(*c.src, c.offset, c.count));
      } catch (...) {
        failed(k, std::current_exception());
      }
    }
  }
  if (plan_failed) failed(plan.size(), plan_failed);
  if (first) std::rethrow_exception(first);
}

}  // namespace fpscope::trace_detail
