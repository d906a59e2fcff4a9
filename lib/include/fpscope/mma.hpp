// Tensor-core instructions bit for bit: D = A * B + C of one matrix instruction as a given GPU
// architecture computes it, and whole GEMMs built from such instructions as real kernels do.
//
// The models are those of MMA-Sim (microsoft/MMA-Sim, PyPI mmasim 2.1.1; Xu et al., arXiv
// 2511.10909), validated there against the hardware; the code is fpscope's own, on integer
// significands, with the final rounding done by the format engine's one routine (round_pack).
// Architectures and instructions are named as MMA-Sim names them, lower-case ("hopper",
// "m16n8k16.f32.f16.f16.f32"; "ada" and "rtx-blackwell" for the two-word names). Every model
// here is MMA-Sim's "truncated fused dot-product-add" (arithmetic/fdpa.py t_fdpa, and st_fdpa for
// the block-scaled MXFP8/6/4 kind, whose scales only add to the products' exponents): the products
// and C are aligned to the largest exponent among them, each truncated to F fraction bits below
// it, summed exactly, and the sum rounded once to the output type; an instruction of depth k
// does this in ceil(k / L) steps of L products, each step's result the next step's C.
// AMD's CDNA3 adds its own variants of that sum (tr_fdpa, gtr_fdpa); CDNA1 and CDNA2 are not
// truncated sums at all (see `arithmetic`): an exact fused sum, an FMA chain, or binary32
// multiplies and adds with subnormals flushed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fpscope/accumulate.hpp"
#include "fpscope/format.hpp"

namespace fpscope::mma {

/// The instruction families: PTX mma.sync, wgmma.mma_async, tcgen05.mma; AMD v_mfma (CDNA1-3).
enum class family : std::uint8_t { mma_sync, wgmma, tcgen05, mfma };

/// The arithmetic of one step (MMA-Sim's arithmetic classes, chosen per instruction in
/// mmasim/amd/sim.py:10-32). Every NVIDIA model and CDNA3's fp16/bf16/xf32/fp8 are a truncated
/// fused sum (fdpa); the others are AMD's f32 and CDNA1's and CDNA2's fp16/bf16:
enum class arithmetic : std::uint8_t {
  fdpa,         ///< the truncated fused dot-product-add of F, L, rho, e_zero (and F2 on CDNA3)
  fma,          ///< f32 on CDNA1-3: one binary32 fused multiply-add per product, in K order (fma.py:66-71)
  e_fdpa,       ///< CDNA1 f16/bf16: L products and C summed exactly, rounded once to nearest-even binary32 (fdpa.py:497-515)
  ftz_mul_add,  ///< CDNA2 f16/bf16: binary32 products and pairwise adds, subnormals flushed (ftz_mul_add.py)
};

/// How a step's exact truncated sum becomes the output (MMA-Sim fdpa.py ldexp_and_normalize).
enum class result_rounding : std::uint8_t {
  rz_fp32,   ///< toward zero to binary32 (gradual underflow; |sum| >= 2^128 gives inf)
  rz_e8m13,  ///< toward zero to 13 fraction bits in binary32's exponent range (FP8 on Hopper, Ada)
  rne_fp16,  ///< nearest-even to binary16
  rne_fp32,  ///< CDNA3: the sum floored to F2 + 1 significant bits, then nearest-even to binary32
};

/// One instruction of one architecture, resolved to its model's parameters.
struct instruction {
  std::string arch;  ///< "hopper"
  std::string name;  ///< "m16n8k16.f32.f16.f16.f32", as MMA-Sim names it
  family fam = family::mma_sync;
  int m = 0, n = 0, k = 0;
  format a{}, b{}, c{}, d{};  ///< operand types (fp32 for f32; tf32 for tf32)
  int F = 0;                  ///< fraction bits kept below the largest exponent when aligning
  result_rounding rho = result_rounding::rz_fp32;
  int L = 0;       ///< products per fused step (k / L steps per instruction)
  int e_zero = 0;  ///< exponent a zero term takes part in the alignment with
  /// Block-scaled (kind::mxf8f6f4, MXFP8/6/4 with FP8/6/4 elements): one UE8M0 scale per `block`
  /// elements of K for each row of A and each column of B; 0 when not block-scaled.
  int block = 0;
  /// MXFP4/NVFP4 (kind::mxf4, mxf4nvf4, k = 64): products are first summed exactly in groups of
  /// `group` (16), each group sum then scaled and aligned as one term (MMA-Sim gst_fdpa); 0 else.
  int group = 0;
  /// CDNA3 (MMA-Sim tr_fdpa): the products alone are aligned and truncated (zeros take no part),
  /// then added to C floored to F2 + 1 bits below the larger exponent; 0 for the NVIDIA models.
  int F2 = 0;
  /// CDNA3 FP8 (MMA-Sim gtr_fdpa): the even and the odd products are aligned and truncated as two
  /// separate sums, floored into one; C far below (more than F + 1 binades) is dropped.
  bool split_even_odd = false;
  /// The step's arithmetic: fdpa, or one of CDNA1/CDNA2's. For those, L is the products of one
  /// step (1 for fma; e_fdpa's L_max 4 fp16, 2 bf16; ftz_mul_add's pair size P, 4, or 2 for
  /// CDNA2's bf16 without _1k) and rho is rne_fp32; F, F2 and e_zero are 0 (no alignment).
  arithmetic arith = arithmetic::fdpa;
  format scale{};  ///< the scales' format when block-scaled: e8m0 (ue8m0) or e4m3 (ue4m3, sign bit ignored)
  /// "ampere: mma.sync m16n8k16.f32.f16.f16.f32 (F=24, L=8, RZ-FP32, e_zero=-132)"
  std::string describe() const;
};

/// The architectures, lower-case, in MMA-Sim's order: "volta", "turing", ..., "rtx-blackwell",
/// "cdna1", "cdna2", "cdna3".
const std::vector<std::string>& architectures();

/// The instruction `name` on `arch`. Throws option_error (one line naming what is known) for an
/// unknown architecture, or an instruction that architecture does not have or that is not modelled.
instruction find(std::string_view arch, std::string_view name);

/// Every instruction name of `arch`, the wgmma/tcgen05 families with their N written "nN"
/// ("m64nNk16.f32.f16.f16", N = 8, 16, ..., 256): for --help and listings. Throws option_error
/// for an unknown architecture.
std::vector<std::string> instruction_names(std::string_view arch);

/// How a GEMM is assembled from instructions.
struct gemm_options {
  /// Promote to a binary32 accumulator every `promote` elements of K (DeepSeek-V3's fix for
  /// FP8 on Hopper): each group of `promote` runs its instructions from a zero accumulator and
  /// is then added, in binary32 nearest-even, to the binary32 total (C first). 0: never; else a
  /// multiple of the instruction's k.
  std::size_t promote = 0;
  int threads = 0;  ///< OpenMP threads over output rows; 0: all
  /// Block-scaled instructions: scale codes (UE8M0: 2^(code - 127); UE4M3: e4m3 with the sign bit
  /// ignored), A's m x ceil(k / block) and B's ceil(k / block) x n, row-major; required by them,
  /// refused by the others. NaN scale codes are refused.
  const std::uint8_t* a_scale = nullptr;
  const std::uint8_t* b_scale = nullptr;
  /// DeepSeek-V3's fine-grained FP8 scaling, as DeepGEMM runs it on Hopper: float32 scales, A's
  /// m x ceil(k / 128) (one per row and 128 elements of K: "1x128"), B's ceil(k / 128) x
  /// ceil(n / 128) (one per 128 x 128 tile), row-major. Each K-block of 128 runs its instructions
  /// from a zero accumulator on the unscaled elements; its result p then goes into the binary32
  /// total (C first) as total = fma(float(sa * sb), p, total), nearest-even. For instructions
  /// without scales of their own (not block-scaled, not AMD v_mfma); implies promotion every 128
  /// (`promote` 0 or 128). Scales must be finite. Both or neither.
  const float* a_scale_1x128 = nullptr;
  const float* b_scale_128x128 = nullptr;
};

/// The K-block (and N-block of B's scales) of the 1x128 recipe: DeepGEMM's BLOCK_K.
inline constexpr std::size_t fine_block = 128;

/// The most results (m x n) and operand elements (m x k, k x n) one gemm takes: 2^30 each (4 GiB
/// of float32). Shapes declared by small files (an (m, 0) array holds no data) cannot ask for more.
inline constexpr std::uint64_t max_gemm_elements = std::uint64_t{1} << 30;

/// D (m x n) = A (m x k) * B (k x n) + C (m x n), row-major, as a kernel computes it with
/// `inst`: the K loop over the instruction's depth, each instruction's D the next one's C (in
/// the output type). A K that is not a multiple of inst.k is padded with zeros, as kernels pad
/// their tiles. A and B hold values of the instruction's input types, C values of its C type
/// (nullptr: +0); each is checked (std::invalid_argument naming the first element that is not
/// exactly such a value). D receives the output-type values as float32 (binary16 results are
/// exact in it); a NaN result is the canonical 0x7FFFFFFF (the hardware's 0x7FFF for f16).
/// k = 0 and shapes beyond max_gemm_elements are refused (std::invalid_argument).
void gemm(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A, const float* B,
          const float* C, float* D, const gemm_options& o = {});

/// A GEMM's errors against the exact A * B + C.
struct error_summary {
  std::uint64_t checked = 0;    ///< results whose error was measured
  std::uint64_t undefined = 0;  ///< of those, without an error: inf/NaN inputs (no exact value) or a NaN result
  double max_abs_rel = 0;       ///< max |D - exact| / |exact| (inf where exact is 0 and D is not)
  double mean_abs_rel = 0;      ///< mean of the same over the results with exact != 0
  double max_abs_ulp = 0;       ///< max |D - exact| in units of D's type's last place at |exact|
  std::uint64_t differ = 0;     ///< results that are not the exact value rounded to nearest double
};

/// The errors of D (from gemm, same arguments) against the exact A * B + C (with the block
/// scales of `o`, if any, 1x128 included), each an exact sum (fpscope::dot's). At most `limit` results are
/// measured, evenly spaced over m x n (all of them when there are no more).
error_summary errors(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A,
                     const float* B, const float* C, const float* D, const gemm_options& o = {},
                     std::uint64_t limit = 4096);

/// One depth of an error-against-K sweep.
struct k_point {
  std::size_t k = 0;  ///< the depth: the first k columns of A and rows of B
  error_summary err;
};

/// The error against K (DeepSeek-V3's figure, the "error against K"): for each depth K of
/// `ks` (each in 1..k), the GEMM of the first K columns of A (m x k, row stride k) and the first K
/// rows of B (k x n), plus C, computed by gemm and measured by errors (`limit` results), with the
/// options `o` (promotion; block scales given for all of k, their first ceil(K / block) blocks
/// used). Throws std::invalid_argument for a K outside 1..k, and whatever gemm throws.
std::vector<k_point> k_sweep(const instruction& inst, std::size_t m, std::size_t n, std::size_t k, const float* A,
                             const float* B, const float* C, const std::vector<std::size_t>& ks,
                             const gemm_options& o = {}, std::uint64_t limit = 4096);

/// One result's error, as errors() measures it: `value` (a D element) against `exact` (the exact
/// A*B+C rounded to double; NaN where there is none): abs_error, rel_error, ulp_error in units
/// of the output type's last place at |exact| (NaN fields where value or exact is NaN).
dot_result measure(const instruction& inst, double value, double exact);

/// One instruction: A inst.m x inst.k, B inst.k x inst.n, C and D inst.m x inst.n.
void run(const instruction& inst, const float* A, const float* B, const float* C, float* D);

}  // namespace fpscope::mma
