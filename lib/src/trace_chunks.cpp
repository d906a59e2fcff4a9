#include "trace_chunks.hpp"

#include <omp.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
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

void read_stored_chunks(std::span<const chunk_source> sources,
                        const std::function<void(std::size_t, std::uint64_t, std::span<const float>)>& f,
                        int threads, std::size_t budget) {
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
          const chunk_source* from = &src;
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
  if (first) std::rethrow_exception(first);
}

}  // namespace fpscope::trace_detail
