#include "trace_chunks.hpp"

#include <omp.h>
#include <libdeflate.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
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

namespace {

// One stored chunk: whose, where, and its bytes as filtered.
struct stored_chunk {
  std::size_t tensor;
  std::uint64_t offset, count;  // elements
  unsigned mask;                // bit i: pipeline filter i was skipped for this chunk
  std::vector<std::uint8_t> bytes;
};

// One thread's decoder: its libdeflate decompressor (which no two threads may share) and its
// buffers, reused chunk after chunk.
class chunk_decoder {
 public:
  chunk_decoder() : d_(libdeflate_alloc_decompressor()) {
    if (!d_) throw std::bad_alloc();
  }

  // Inflates and unshuffles a stored chunk and widens its `count` values to float32. Touches no
  // HDF5 state (any thread). nullopt when the bytes do not decode to a whole chunk.
  std::optional<std::span<const float>> decode(const stored_chunk& c, const raw_layout& l, trace_dtype dt) {
    const std::size_t size = storage(dt).second, whole = l.chunk * size;
    const std::uint8_t* p = c.bytes.data();
    std::size_t n = c.bytes.size();
    if (l.deflate >= 0 && !(c.mask >> l.deflate & 1)) {
      // HDF5's deflate filter writes zlib streams: libdeflate checks the header and the Adler-32
      // of the data, and (no actual-size argument) that they inflate to exactly `whole` bytes.
      inflated_.resize(whole);
      if (libdeflate_zlib_decompress(d_.get(), p, n, inflated_.data(), whole, nullptr) != LIBDEFLATE_SUCCESS)
        return std::nullopt;
      p = inflated_.data(), n = whole;
    }
    if (n != whole) return std::nullopt;
    if (l.shuffle >= 0 && !(c.mask >> l.shuffle & 1) && size > 1) {
      // HDF5's shuffle stores byte b of every element together: plane b holds element i's byte b at i.
      plain_.resize(whole);
      const std::size_t e = l.chunk;
      if (size == 4)
        for (std::size_t i = 0; i < e; ++i)
          plain_[4 * i] = p[i], plain_[4 * i + 1] = p[e + i], plain_[4 * i + 2] = p[2 * e + i],
                     plain_[4 * i + 3] = p[3 * e + i];
      else
        for (std::size_t i = 0; i < e; ++i) plain_[2 * i] = p[i], plain_[2 * i + 1] = p[e + i];
      p = plain_.data();
    }
    out_.resize(c.count);
    switch (dt) {
      case trace_dtype::float32: std::memcpy(out_.data(), p, c.count * 4); break;
      case trace_dtype::float16:
      case trace_dtype::bfloat16: {
        std::vector<std::uint16_t> bits(c.count);
        std::memcpy(bits.data(), p, c.count * 2);
        fpscope::decode(std::span<const std::uint16_t>(bits), std::span<float>(out_),
                        builtin(dt == trace_dtype::float16 ? format_id::fp16 : format_id::bf16));
        break;
      }
      default:
        fpscope::decode(std::span<const std::uint8_t>(p, c.count), std::span<float>(out_),
                        builtin(dt == trace_dtype::e4m3 ? format_id::e4m3 : format_id::e5m2));
    }
    return std::span<const float>(out_);
  }

 private:
  struct free_decompressor {
    void operator()(libdeflate_decompressor* d) const { libdeflate_free_decompressor(d); }
  };
  std::unique_ptr<libdeflate_decompressor, free_decompressor> d_;
  std::vector<std::uint8_t> inflated_, plain_;
  std::vector<float> out_;
};

}  // namespace

void read_stored_chunks(std::span<const chunk_source> sources,
                        const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                        int threads, std::size_t budget) {
  // This thread reads the stored chunks (one caller in HDF5 at a time) and hands each to an
  // OpenMP task that inflates, unshuffles, widens and passes it on, so reading overlaps decoding.
  // At most about `budget` stored bytes are in flight. The first failure, in reading order, is
  // the one thrown.
  const int nt = std::max(1, threads > 0 ? threads : omp_get_max_threads());
  std::vector<chunk_decoder> decoders(static_cast<std::size_t>(nt));
  std::mutex m;
  std::size_t first_seq = ~std::size_t{0};
  std::exception_ptr first;
  std::atomic<bool> stop{false};
  const auto failed = [&](std::size_t seq, std::exception_ptr e) {
    const std::lock_guard lock(m);
    if (seq < first_seq) first_seq = seq, first = std::move(e);
    stop = true;
  };
  const auto corrupt = [&](const chunk_source& src, std::uint64_t lo, std::uint64_t n) {
    return std::make_exception_ptr(trace_error(src.where + ": cannot read values " + std::to_string(lo) + ".." +
                                               std::to_string(lo + n) + " (corrupt data?)"));
  };
#pragma omp parallel num_threads(nt)
#pragma omp single
  {
    std::size_t seq = 0, held = 0;
    try {  // nothing may leave an OpenMP region by an exception
      for (const chunk_source& src : sources) {
        const std::size_t whole = src.l.chunk * storage(src.t->dtype).second;
        // deflate's worst case (zlib's compressBound) and a little: a larger stored chunk is not ours to read.
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
          const chunk_source* from = &src;
#pragma omp task firstprivate(ch, seq, from) default(shared)
          if (!stop) {
            chunk_decoder& d = decoders[std::size_t(omp_get_thread_num())];
            try {
              if (const auto v = d.decode(*ch, from->l, from->t->dtype))
                f(ch->tensor, ch->offset, *v);
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
  if (first) std::rethrow_exception(first);
}

}  // namespace fpscope::trace_detail
