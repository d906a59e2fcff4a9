#include "fpscope/convert.hpp"

#include "convert_hw.hpp"
#include "float_encoder.hpp"

#include <array>
#include <cstdio>
#include <cfenv>
#include <type_traits>
#include <mutex>

#include <omp.h>
#include <stdexcept>
#include <string>
#include <vector>

namespace fpscope {
namespace {

using detail::binary;

constexpr std::ptrdiff_t block = 4096;

// One block of elements. With the format and mode constant and the policy resolved into a
// packer, the round_pack body folds to a branch-free sequence the compiler vectorises; the
// packer comes by value and the pointers are restrict, so nothing in the loop aliases them.
template <class In, class Out, class Fmt, class Rnd>
void encode_run(const In* __restrict in, Out* __restrict out, std::size_t n, Fmt fmt, Rnd rnd,
                const detail::packer<typename binary<In>::bits> k, const In scale, const std::uint64_t first) {
  const format f = fmt();
  const rounding r = rnd();
  if (scale != In(1)) {
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(detail::round_pack<In>(detail::to_bits(In(in[i] * scale)), f, r, k, first + i));
  } else {
    for (std::size_t i = 0; i < n; ++i)
      out[i] = static_cast<Out>(detail::round_pack<In>(detail::to_bits(in[i]), f, r, k, first + i));
  }
}

template <format_id F>
struct const_format {
  constexpr format operator()() const { return builtin(F); }
};
template <class Fmt>
struct fixed_format_id {
  static constexpr bool known = false;
  static constexpr format_id id = format_id::fp16;
};
template <format_id F>
struct fixed_format_id<const_format<F>> {
  static constexpr bool known = true;
  static constexpr format_id id = F;
};

// Nearest-even from float32, the common case, has a shorter form of round_pack's arithmetic
// (the two agree bit for bit: the oracle suite sweeps this bulk path over all 2^32 inputs for
// every profile, the scalar API takes round_pack, and the unit tests compare the two).
//   normal results    one integer add re-biases the exponent and rounds on the dropped bits,
//                     a carry moving into the exponent (and up to the inf code) by itself;
//   subnormal results the FPU rounds |x| + C to the quantum of C, 2^(emin - man), which is the
//                     subnormal quantum: bits(|x| + C) - bits(C) is the code (needs the FPU
//                     in round-to-nearest, checked per block; MXCSR's DAZ can only zero
//                     float32 denormals, which round to 0 in these formats anyway);
//   overflow          min(code, cap): the overflow code's magnitude (inf, the fn NaN, or max);
//   NaN               the packer's NaN code and payload bits.
// It covers IEEE and OCP "fn" formats with subnormals (fp16, bf16, tf32, e4m3, e5m2) without
// FTZ, and leaves saturate-but-keep-inf to round_pack.
constexpr bool rne_fast_format(const format& f) {
  return f.subnormals && f.man_bits < 23 && f.exp_bits <= 8 &&
         (f.specials == special::ieee || f.specials == special::fn);
}

template <format_id F>
FPSCOPE_INLINE std::uint32_t rne_fast(std::uint32_t x, const detail::packer<std::uint32_t>& k, std::uint32_t cap) {
  constexpr format f = builtin(F);
  constexpr int sh = 23 - f.man_bits;
  constexpr std::uint32_t inf32 = 0x7F800000u;
  std::uint32_t a = x & 0x7FFFFFFFu;
  a &= ~(k.daz & (a < 0x00800000u ? ~0u : 0u));
  const std::uint32_t neg = 0u - (x >> 31);
  const std::uint32_t sign = (x >> (32 - f.bits)) & f.sign_mask();
  constexpr std::uint32_t rebias = (static_cast<std::uint32_t>(f.bias) - 127u) << 23;  // wraps: mod 2^32
  std::uint32_t r = (a + rebias + ((1u << (sh - 1)) - 1) + ((a >> sh) & 1u)) >> sh;
  if constexpr (f.exp_bits < 8) {
    constexpr std::uint32_t min_normal = static_cast<std::uint32_t>(f.emin() + 127) << 23;
    constexpr std::uint32_t magic = static_cast<std::uint32_t>(f.emin() - f.man_bits + 23 + 127) << 23;
    const bool tiny = a < min_normal;
    const float t = detail::from_bits<float>(tiny ? a : 0u);
    const std::uint32_t sub = detail::to_bits(t + detail::from_bits<float>(magic)) - magic;
    r = tiny ? sub : r;
  }
  r = r < cap ? r : cap;
  const std::uint32_t nan = ((k.nan[1] & neg) | (k.nan[0] & ~neg)) | ((a >> sh) & k.nan_payload);
  return a > inf32 ? nan : (sign | r);
}

template <format_id F, class Out>
void encode_rne_fast(const float* __restrict in, Out* __restrict out, std::size_t n,
                     const detail::packer<std::uint32_t> k, const float scale) {
  const std::uint32_t cap = k.ovf[0];  // positive: the magnitude
  if (scale != 1.0f) {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(rne_fast<F>(detail::to_bits(in[i] * scale), k, cap));
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<Out>(rne_fast<F>(detail::to_bits(in[i]), k, cap));
  }
}

template <class In, class Out, class Fmt, class Rnd>
void encode_block(const In* in, Out* out, std::size_t n, Fmt fmt, Rnd rnd,
                  const detail::packer<typename binary<In>::bits>& k, const In scale, const std::uint64_t first) {
  if constexpr (std::is_same_v<In, float> && fixed_format_id<Fmt>::known) {
    constexpr format_id id = fixed_format_id<Fmt>::id;
    if constexpr (rne_fast_format(builtin(id))) {
      // saturate with inf kept (saturate_inf false) is the one overflow policy min() cannot express.
      const bool keeps_inf = k.inf[0] != k.ovf[0];
      if (rnd() == rounding::rne && k.ftz == 0 && !keeps_inf && std::fegetround() == FE_TONEAREST)
        return encode_rne_fast<id>(in, out, n, k, scale);
    }
  }
  encode_run(in, out, n, fmt, rnd, k, scale, first);
}

// Hardware instructions that give the software path's bits for some (format, policy) pairs.
enum class hw_path { none, f16c, bf16, bf16_daz };

bool same_packer(const detail::packer<std::uint32_t>& a, const detail::packer<std::uint32_t>& b) {
  return a.max_code == b.max_code && a.ovf[0] == b.ovf[0] && a.ovf[1] == b.ovf[1] && a.inf[0] == b.inf[0] &&
         a.inf[1] == b.inf[1] && a.nan[0] == b.nan[0] && a.nan[1] == b.nan[1] && a.nan_payload == b.nan_payload &&
         a.daz == b.daz && a.ftz == b.ftz;
}

// The policy resolved for nearest-even must be the one of a profile whose bits the instruction
// reproduces (proven by the oracle tests: ieee == F16C, avx512bf16 == AVX512-BF16, and ieee ==
// AVX512-BF16 but for float32 denormal inputs, which bf16_rne rounds in software).
hw_path pick_hw(const format& f, const policy& p) {
  if (p.round != rounding::rne) return hw_path::none;
  const auto id = builtin_id(f);
  if (!id || (*id != format_id::fp16 && *id != format_id::bf16)) return hw_path::none;
  const auto k = detail::prepare<std::uint32_t>(f, p, rounding::rne);
  const auto like = [&](profile pr) {
    return same_packer(k, detail::prepare<std::uint32_t>(f, profile_policy(pr, f), rounding::rne));
  };
  if (*id == format_id::fp16)
    return like(profile::ieee) && detail::cpu_has_f16c() && !detail::mxcsr_daz() ? hw_path::f16c : hw_path::none;
  if (!detail::cpu_has_avx512bf16()) return hw_path::none;
  return like(profile::ieee) ? hw_path::bf16 : like(profile::avx512bf16) ? hw_path::bf16_daz : hw_path::none;
}

// Blocks give OpenMP coarse work items; below the threshold the loop stays serial.
template <class In, class Out, class Fmt, class Rnd>
void encode_loop(const In* in, Out* out, std::size_t n, Fmt fmt, Rnd rnd, const policy& p,
                 const bulk_options& o) {
  const auto blocks = static_cast<std::ptrdiff_t>((n + block - 1) / block);
  const auto k = detail::prepare<typename binary<In>::bits>(fmt(), p, rnd());
  const bool parallel = o.threads > 1 || (o.threads == 0 && n >= parallel_threshold);
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  hw_path hw = hw_path::none;
  if constexpr (std::is_same_v<In, float> && std::is_same_v<Out, std::uint16_t>)
    if (o.hardware && rnd() == rounding::rne) hw = pick_hw(fmt(), p);
  const auto run = [&](std::ptrdiff_t b) {
    const std::size_t lo = std::size_t(b) * block;
    if constexpr (std::is_same_v<In, float> && std::is_same_v<Out, std::uint16_t>) {
      const std::size_t m = std::min<std::size_t>(block, n - lo);
      const auto scale = static_cast<float>(o.scale);
      if (hw == hw_path::f16c) {
        detail::f16c_rne(in + lo, out + lo, m, scale);
        return;
      }
      if (hw == hw_path::bf16 || hw == hw_path::bf16_daz) {
        detail::bf16_rne(in + lo, out + lo, m, scale, hw == hw_path::bf16_daz);
        return;
      }
    }
    encode_block(in + lo, out + lo, std::min<std::size_t>(block, n - lo), fmt, rnd, k,
                 static_cast<In>(o.scale), o.first_index + lo);
  };
  // A serial call never enters the OpenMP runtime: an `if (false)` region still starts a team
  // of one, which costs more than a small block's conversion (the error pass of fpscope hist
  // calls this per block of a few thousand values, from inside its own parallel region).
  if (!parallel) {
    for (std::ptrdiff_t b = 0; b < blocks; ++b) run(b);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::ptrdiff_t b = 0; b < blocks; ++b) run(b);
}


template <rounding R>
struct const_rounding {
  constexpr rounding operator()() const { return R; }
};

template <class In, class Out>
using loop_fn = void (*)(const In*, Out*, std::size_t, const policy&, const bulk_options&);

template <class In, class Out, format_id F, rounding R>
void fixed_loop(const In* in, Out* out, std::size_t n, const policy& p, const bulk_options& o) {
  encode_loop(in, out, n, const_format<F>{}, const_rounding<R>{}, p, o);
}

template <class Out, format_id F, rounding R>
void fixed_block(const float* in, Out* out, std::size_t n, const detail::packer<std::uint32_t>& k, std::uint64_t first,
                 const format&, rounding) {
  encode_block(in, out, n, const_format<F>{}, const_rounding<R>{}, k, 1.0f, first);
}

template <class Out>
void any_block(const float* in, Out* out, std::size_t n, const detail::packer<std::uint32_t>& k, std::uint64_t first,
               const format& f, rounding r) {
  encode_block(in, out, n, [&f] { return f; }, [r] { return r; }, k, 1.0f, first);
}

// make.template operator()<F, R>() for the built-in format F and mode R with both as constants
// (null where F's codes are not stored in Out): the one place a run-time (format, mode) pair
// becomes a specialised bulk loop.
template <class Out, format_id F, class Fn, class Make>
Fn by_mode(rounding r, Make make) {
  if constexpr (builtin(F).storage_bytes() != sizeof(Out)) {
    return nullptr;
  } else {
    switch (r) {
      case rounding::rne: return make.template operator()<F, rounding::rne>();
      case rounding::rtz: return make.template operator()<F, rounding::rtz>();
      case rounding::rup: return make.template operator()<F, rounding::rup>();
      case rounding::rdn: return make.template operator()<F, rounding::rdn>();
      case rounding::rna: return make.template operator()<F, rounding::rna>();
      case rounding::rto: return make.template operator()<F, rounding::rto>();
      case rounding::sr: return make.template operator()<F, rounding::sr>();
    }
    return nullptr;
  }
}

template <class Out, class Fn, class Make>
Fn pick_fixed(format_id id, rounding r, Make make) {
  Fn fn = nullptr;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    ((id == static_cast<format_id>(I) ? (fn = by_mode<Out, static_cast<format_id>(I), Fn>(r, make)) : fn), ...);
  }(std::make_index_sequence<builtin_count>{});
  return fn;
}

template <class Out>
void check_sizes(std::size_t n_in, std::size_t n_out, const format& f) {
  if (n_in != n_out)
    throw std::invalid_argument("bulk conversion: input has " + std::to_string(n_in) +
                                " elements but output has " + std::to_string(n_out));
  if (static_cast<int>(sizeof(Out)) != f.storage_bytes())
    throw std::invalid_argument(std::string("bulk conversion: ") + f.name + " is stored in " +
                                std::to_string(f.storage_bytes()) + "-byte words, not " +
                                std::to_string(sizeof(Out)));
}

template <class In, class Out>
void encode_bulk(std::span<const In> in, std::span<Out> out, const format& f, const policy& p,
                 const bulk_options& o) {
  check_sizes<Out>(in.size(), out.size(), f);
  if (auto id = builtin_id(f)) {
    if (auto fn = pick_fixed<Out, loop_fn<In, Out>>(
            *id, p.round, []<format_id F, rounding R>() { return &fixed_loop<In, Out, F, R>; }))
      return fn(in.data(), out.data(), in.size(), p, o);
  }
  encode_loop(in.data(), out.data(), in.size(), [&f] { return f; }, [&p] { return p.round; }, p, o);
}

// Decoding tables for formats of at most 16 bits, built once per format.
const float* decode_table(const format& f) {
  static std::array<std::vector<float>, builtin_count> tables;
  static std::array<std::once_flag, builtin_count> once;
  const auto id = builtin_id(f);
  if (!id || f.bits > 16) return nullptr;
  const auto i = static_cast<std::size_t>(*id);
  std::call_once(once[i], [&] {
    tables[i].resize(std::size_t{1} << f.bits);
    for (std::uint32_t b = 0; b < tables[i].size(); ++b) tables[i][b] = static_cast<float>(decode(b, f));
  });
  return tables[i].data();
}

template <class In, class T>
void decode_bulk(std::span<const In> in, std::span<T> out, const format& f) {
  if (in.size() != out.size())
    throw std::invalid_argument("bulk decode: input and output sizes differ");
  check_codes(in, f);
  const auto n = static_cast<std::ptrdiff_t>(in.size());
  const bool parallel = in.size() >= parallel_threshold;
  // Serial calls stay out of the OpenMP runtime (see encode_loop).
  if (const float* t = decode_table(f)) {
    const std::uint32_t mask = f.mask();
    if (!parallel) {
      for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = static_cast<T>(t[in[i] & mask]);
      return;
    }
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = static_cast<T>(t[in[i] & mask]);
  } else {
    if (!parallel) {
      for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = static_cast<T>(decode(in[i], f));
      return;
    }
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) out[i] = static_cast<T>(decode(in[i], f));
  }
}

}  // namespace

namespace detail {

template <class Out>
float_encoder<Out>::float_encoder(const format& f, const policy& p)
    : f_(f), r_(p.round), k_(prepare<std::uint32_t>(f, p, p.round)), fn_(&any_block<Out>) {
  using fn = typename float_encoder<Out>::block_fn;
  if (auto id = builtin_id(f))
    if (auto picked = pick_fixed<Out, fn>(*id, p.round, []<format_id F, rounding R>() { return &fixed_block<Out, F, R>; }))
      fn_ = picked;
}

template class float_encoder<std::uint8_t>;
template class float_encoder<std::uint16_t>;
template class float_encoder<std::uint32_t>;

}  // namespace detail

bool encode_uses_hardware(const format& f, const policy& p) { return pick_hw(f, p) != hw_path::none; }

std::string_view name(value_class c) {
  switch (c) {
    case value_class::zero: return "zero";
    case value_class::subnormal: return "subnormal";
    case value_class::normal: return "normal";
    case value_class::infinite: return "infinite";
    case value_class::nan: return "nan";
  }
  return "?";
}

value_class classify(std::uint32_t bits, const format& f) {
  if (f.is_nan(bits)) return value_class::nan;
  if (f.is_inf(bits)) return value_class::infinite;
  if (decode(bits, f) == 0) return value_class::zero;  // by value: e8m0's code 0 is 2^-127
  return f.is_subnormal(bits) ? value_class::subnormal : value_class::normal;
}

std::string code_does_not_fit(std::uint32_t code, const format& f) {
  const auto hex = [](std::uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "0x%x", v);
    return std::string(b);
  };
  return "code " + hex(code) + " does not fit in " + f.name + " (" + std::to_string(f.bits) + " bits: " + hex(0) +
         " to " + hex(f.mask()) + ")";
}

template <class W>
void check_codes(std::span<const W> codes, const format& f, std::uint64_t first_index) {
  if (f.bits >= int(8 * sizeof(W))) return;
  const W over = static_cast<W>(~f.mask());
  W any = 0;
  for (const W c : codes) any = static_cast<W>(any | c);  // one vectorised pass: the common, clean case
  if (!(any & over)) return;
  for (std::size_t i = 0; i < codes.size(); ++i)
    if (codes[i] & over)
      throw std::invalid_argument(code_does_not_fit(codes[i], f) + " (element " + std::to_string(first_index + i) + ")");
}

template <class Out>
void encode(std::span<const float> in, std::span<Out> out, const format& f, const policy& p,
            const bulk_options& o) {
  encode_bulk<float, Out>(in, out, f, p, o);
}
template <class Out>
void encode(std::span<const double> in, std::span<Out> out, const format& f, const policy& p,
            const bulk_options& o) {
  encode_bulk<double, Out>(in, out, f, p, o);
}
template <class In>
void decode(std::span<const In> in, std::span<float> out, const format& f) {
  decode_bulk<In, float>(in, out, f);
}
template <class In>
void decode(std::span<const In> in, std::span<double> out, const format& f) {
  decode_bulk<In, double>(in, out, f);
}

#define FPSCOPE_INSTANTIATE(W)                                                                   \
  template void encode<W>(std::span<const float>, std::span<W>, const format&, const policy&,   \
                          const bulk_options&);                                                 \
  template void encode<W>(std::span<const double>, std::span<W>, const format&, const policy&,  \
                          const bulk_options&);                                                 \
  template void decode<W>(std::span<const W>, std::span<float>, const format&);                 \
  template void decode<W>(std::span<const W>, std::span<double>, const format&);                \
  template void check_codes<W>(std::span<const W>, const format&, std::uint64_t);
FPSCOPE_INSTANTIATE(std::uint8_t)
FPSCOPE_INSTANTIATE(std::uint16_t)
FPSCOPE_INSTANTIATE(std::uint32_t)
#undef FPSCOPE_INSTANTIATE

}  // namespace fpscope
