// Bulk arithmetic: spans of codes in, a span of codes out, every element bit for bit what the
// scalar fpscope::apply (arith.hpp) gives for it.
#pragma once

#include <cstdint>
#include <span>

#include "fpscope/arith.hpp"
#include "fpscope/convert.hpp"

namespace fpscope {

/// Element count from which bulk arithmetic goes parallel (OpenMP), measured by
/// fpscope-bench-arith (tools/bench/RESULTS-arith.md): back to back, two threads win from
/// 2^12 elements, but a call after the workers went idle gains only from 2^19.
inline constexpr std::size_t arith_parallel_threshold = std::size_t{1} << 19;

/// out[i] = apply(o, a[i], b[i], c[i], f, p, opt.first_index + i) for every i. `b` is unused
/// (may be empty) for sqrt, `c` for every operation but fma. Codes are f.storage_bytes()-wide
/// words; `opt.scale` must be 1. Throws std::invalid_argument on a size, width or scale
/// mismatch, or a code wider than the format (check_codes, convert.hpp). IEEE flags come from the scalar API only.
template <class W>
void apply(op o, std::span<const W> a, std::span<const W> b, std::span<const W> c, std::span<W> out,
           const format& f, const policy& p = {}, const bulk_options& opt = {});

/// Whether apply() on spans takes the vectorised path for this operation, format and policy
/// (else it loops over the scalar apply: same results, about 20-40x slower). Nearest-even
/// and the other deterministic modes are vectorised for add, sub, mul, div, sqrt and fma in
/// every built-in format but e8m0; stochastic rounding, min and max are not.
bool apply_is_vectorised(op o, const format& f, const policy& p);

}  // namespace fpscope
