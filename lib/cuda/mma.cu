// The tensor-core instructions themselves, run on the GPU: mma.sync (sm_80 and up) and wgmma
// (sm_90a), one instruction per tile of operands, for fpscope-gpucheck to compare with the
// instruction models of fpscope::mma bit for bit. No arithmetic of ours happens here: operands
// arrive as the instruction's register words (codes), are packed into fragments as the PTX ISA
// lays them out, and D's words go back as the instruction left them.
//
// Fragment layouts: PTX ISA 9.0, "Matrix Fragments for mma.m16n8k16 with floating point type"
// (A: a0..a7, row = groupID (+8 for a2,a3,a6,a7), col = 2*threadID_in_group + (i & 1) (+8 for
// a4..a7); B: row = 2*threadID_in_group + (i & 1) (+8 for b2,b3), col = groupID; C/D: row =
// groupID (+8 for c2,c3), col = 2*threadID_in_group + (i & 1)), "... mma.m16n8k8 with .tf32"
// (A: row = groupID (+8 for a1,a3), col = threadID_in_group (+4 for a2,a3); B: row =
// threadID_in_group (+4 for b1), col = groupID), "... mma.m16n8k8 with .f16" (A: row = groupID
// (+8 for a2,a3), col = 2*threadID_in_group + (i & 1); B: row = 2*threadID_in_group + (i & 1)),
// and "Register Fragments and Shared Memory Matrix Layouts" of wgmma (warp w of the warpgroup
// holds rows 16w..16w+15 of A and D, each as the m16 fragment above; .e4m3/.e5m2 A: a0..a15,
// row = groupID (+8 for a4..a7, a12..a15), col = 4*threadID_in_group + (i & 3) (+16 for
// a8..a15)). The same maps, read off CUTLASS's CuTe (include/cute/atom/mma_traits_sm90_gmma.hpp:
// ALayout_64x16 = CLayout_64x16 ((4,8,4),(2,2,2)):((128,1,16),(64,8,512)) over (M, K) column-major,
// ALayout_64x8 for tf32 ((64,1,16),(8,256)), ALayout_64x32 for 8-bit ((256,1,16),(64,8,1024)); and
// make_gmma_desc's K-major INTERLEAVE form ((8,n),2):((1,SBO),LBO) in 16-byte units, so LBO is the
// step along K), agree with every line below. The "layout" rows of fpscope-gpucheck prove them on
// the hardware with integer operands whose exact result every model agrees on, before any rounding
// is compared.
#include "fpscope/cuda.hpp"

#include <cuda_runtime.h>

#include <cstring>
#include <stdexcept>
#include <string>

namespace fpscope::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("fpscope::cuda: ") + what + ": " + cudaGetErrorString(e));
}

// The instructions, by the opcode the kernels switch on. Named as fpscope::mma names them
// (MMA-Sim's names: mma.sync m16n8k16.D.A.B.C, wgmma m64nNkK.D.A.B with N = 8 here).
enum op : int {
  sync_f32_f16_k16,
  sync_f16_f16_k16,
  sync_f32_bf16_k16,
  sync_f32_tf32_k8,
  sync_f32_f16_k8,
  wg_f32_f16,
  wg_f16_f16,
  wg_f32_bf16,
  wg_f32_tf32,
  wg_f32_e4m3_e4m3,
  wg_f32_e4m3_e5m2,
  wg_f32_e5m2_e4m3,
  wg_f32_e5m2_e5m2,
  wg_f16_e4m3_e4m3,
  wg_f16_e4m3_e5m2,
  wg_f16_e5m2_e4m3,
  wg_f16_e5m2_e5m2,
};

struct entry {
  mma_device_instruction info;
  op code;
};

const entry table[] = {
    {{"m16n8k16.f32.f16.f16.f32", 16, 8, 16, 80, false}, sync_f32_f16_k16},
    {{"m16n8k16.f16.f16.f16.f16", 16, 8, 16, 80, false}, sync_f16_f16_k16},
    {{"m16n8k16.f32.bf16.bf16.f32", 16, 8, 16, 80, false}, sync_f32_bf16_k16},
    {{"m16n8k8.f32.tf32.tf32.f32", 16, 8, 8, 80, false}, sync_f32_tf32_k8},
    {{"m16n8k8.f32.f16.f16.f32", 16, 8, 8, 80, false}, sync_f32_f16_k8},
    {{"m64n8k16.f32.f16.f16", 64, 8, 16, 90, true}, wg_f32_f16},
    {{"m64n8k16.f16.f16.f16", 64, 8, 16, 90, true}, wg_f16_f16},
    {{"m64n8k16.f32.bf16.bf16", 64, 8, 16, 90, true}, wg_f32_bf16},
    {{"m64n8k8.f32.tf32.tf32", 64, 8, 8, 90, true}, wg_f32_tf32},
    {{"m64n8k32.f32.e4m3.e4m3", 64, 8, 32, 90, true}, wg_f32_e4m3_e4m3},
    {{"m64n8k32.f32.e4m3.e5m2", 64, 8, 32, 90, true}, wg_f32_e4m3_e5m2},
    {{"m64n8k32.f32.e5m2.e4m3", 64, 8, 32, 90, true}, wg_f32_e5m2_e4m3},
    {{"m64n8k32.f32.e5m2.e5m2", 64, 8, 32, 90, true}, wg_f32_e5m2_e5m2},
    {{"m64n8k32.f16.e4m3.e4m3", 64, 8, 32, 90, true}, wg_f16_e4m3_e4m3},
    {{"m64n8k32.f16.e4m3.e5m2", 64, 8, 32, 90, true}, wg_f16_e4m3_e5m2},
    {{"m64n8k32.f16.e5m2.e4m3", 64, 8, 32, 90, true}, wg_f16_e5m2_e4m3},
    {{"m64n8k32.f16.e5m2.e5m2", 64, 8, 32, 90, true}, wg_f16_e5m2_e5m2},
};

// Element (row, col) of a row-major tile of `cols` columns, as a register word.
__device__ __forceinline__ std::uint32_t at(const std::uint32_t* t, int cols, int row, int col) {
  return t[row * cols + col];
}
__device__ __forceinline__ std::uint32_t pack16(std::uint32_t lo, std::uint32_t hi) {
  return (lo & 0xFFFFu) | (hi << 16);
}
__device__ __forceinline__ std::uint32_t pack8(std::uint32_t b0, std::uint32_t b1, std::uint32_t b2, std::uint32_t b3) {
  return (b0 & 0xFFu) | ((b1 & 0xFFu) << 8) | ((b2 & 0xFFu) << 16) | (b3 << 24);
}

// A fragment of an m16 x K slice (rows r0..r0+15) of A, for this lane (g = lane / 4, t = lane % 4).
// 16-bit elements, K = 16: register r holds row g + 8 (r & 1), cols 2t + 8 (r >> 1) and +1.
[[maybe_unused]] __device__ void a_frag16_k16(const std::uint32_t* A, int r0, int g, int t, std::uint32_t a[4]) {
  for (int r = 0; r < 4; ++r) {
    const int row = r0 + g + 8 * (r & 1), col = 2 * t + 8 * (r >> 1);
    a[r] = pack16(at(A, 16, row, col), at(A, 16, row, col + 1));
  }
}
// tf32, K = 8: register r holds row g + 8 (r & 1), col t + 4 (r >> 1).
[[maybe_unused]] __device__ void a_frag_tf32(const std::uint32_t* A, int r0, int g, int t, std::uint32_t a[4]) {
  for (int r = 0; r < 4; ++r) a[r] = at(A, 8, r0 + g + 8 * (r & 1), t + 4 * (r >> 1));
}
// 8-bit elements, K = 32: register r holds row g + 8 (r & 1), cols 4t + 16 (r >> 1) .. +3.
[[maybe_unused]] __device__ void a_frag8_k32(const std::uint32_t* A, int r0, int g, int t, std::uint32_t a[4]) {
  for (int r = 0; r < 4; ++r) {
    const int row = r0 + g + 8 * (r & 1), col = 4 * t + 16 * (r >> 1);
    a[r] = pack8(at(A, 32, row, col), at(A, 32, row, col + 1), at(A, 32, row, col + 2), at(A, 32, row, col + 3));
  }
}

// The mma.sync instructions: one warp per tile.
template <int OP>
__global__ void mma_sync_kernel(const std::uint32_t* A, const std::uint32_t* B, const std::uint32_t* C,
                                std::uint32_t* D, std::size_t tiles) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int K = (OP == sync_f32_tf32_k8 || OP == sync_f32_f16_k8) ? 8 : 16;
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const std::size_t warps = std::size_t{gridDim.x} * (blockDim.x / 32);
  for (std::size_t tile = std::size_t{blockIdx.x} * (blockDim.x / 32) + threadIdx.x / 32; tile < tiles; tile += warps) {
    const std::uint32_t* a_t = A + tile * 16 * K;
    const std::uint32_t* b_t = B + tile * K * 8;
    const std::uint32_t* c_t = C + tile * 128;
    std::uint32_t* d_t = D + tile * 128;
    if constexpr (OP == sync_f16_f16_k16) {
      std::uint32_t a[4], b[2], c[2], d[2];
      a_frag16_k16(a_t, 0, g, t, a);
      for (int r = 0; r < 2; ++r) b[r] = pack16(at(b_t, 8, 2 * t + 8 * r, g), at(b_t, 8, 2 * t + 8 * r + 1, g));
      for (int r = 0; r < 2; ++r) c[r] = pack16(at(c_t, 8, g + 8 * r, 2 * t), at(c_t, 8, g + 8 * r, 2 * t + 1));
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0,%1}, {%2,%3,%4,%5}, {%6,%7}, {%8,%9};\n"
          : "=r"(d[0]), "=r"(d[1])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(c[0]), "r"(c[1]));
      for (int r = 0; r < 2; ++r) {
        d_t[(g + 8 * r) * 8 + 2 * t] = d[r] & 0xFFFFu;
        d_t[(g + 8 * r) * 8 + 2 * t + 1] = d[r] >> 16;
      }
    } else {
      std::uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
      float c[4], d[4];
      if constexpr (OP == sync_f32_tf32_k8) {
        a_frag_tf32(a_t, 0, g, t, a);
        for (int r = 0; r < 2; ++r) b[r] = at(b_t, 8, t + 4 * r, g);
      } else if constexpr (OP == sync_f32_f16_k8) {
        for (int r = 0; r < 2; ++r) a[r] = pack16(at(a_t, 8, g + 8 * r, 2 * t), at(a_t, 8, g + 8 * r, 2 * t + 1));
        b[0] = pack16(at(b_t, 8, 2 * t, g), at(b_t, 8, 2 * t + 1, g));
      } else {
        a_frag16_k16(a_t, 0, g, t, a);
        for (int r = 0; r < 2; ++r) b[r] = pack16(at(b_t, 8, 2 * t + 8 * r, g), at(b_t, 8, 2 * t + 8 * r + 1, g));
      }
      for (int r = 0; r < 4; ++r) c[r] = __uint_as_float(at(c_t, 8, g + 8 * (r >> 1), 2 * t + (r & 1)));
      if constexpr (OP == sync_f32_f16_k16)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%10,%11,%12,%13};\n"
            : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
              "f"(c[3]));
      else if constexpr (OP == sync_f32_bf16_k16)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%10,%11,%12,%13};\n"
            : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
              "f"(c[3]));
      else if constexpr (OP == sync_f32_tf32_k8)
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%10,%11,%12,%13};\n"
            : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
              "f"(c[3]));
      else
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%7,%8,%9,%10};\n"
            : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(b[0]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
      for (int r = 0; r < 4; ++r) d_t[(g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)] = __float_as_uint(d[r]);
    }
  }
#else
  (void)A, (void)B, (void)C, (void)D, (void)tiles;
  __trap();
#endif
}

// The wgmma instructions: one warpgroup (128 threads) per block, a tile at a time. A comes from
// registers (the m16 fragments, warp w taking rows 16w..16w+15), B from shared memory through a
// matrix descriptor: K-major (B^T stored n-row by n-row, K contiguous), no swizzle, as 8 x 16-byte
// "core matrices". Every instruction here reads 32 bytes of K per column of B (16 f16/bf16, 8 tf32,
// 32 fp8): two core matrices side by side in K, the first at byte 0 and the second at byte 128.
// The descriptor's leading-dimension offset is the step between core matrices along K (CuTe's
// K-major INTERLEAVE form, above): 128. With N = 8 there is one core matrix in N, so the stride
// offset (between 8-column groups) is never used; it is set to 128 as well, so that a misreading
// of which offset is which could not change the result.
template <int OP>
__global__ void wgmma_kernel(const std::uint32_t* A, const std::uint32_t* B, const std::uint32_t* C, std::uint32_t* D,
                             std::size_t tiles) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool fp8 = OP >= wg_f32_e4m3_e4m3;
  constexpr bool tf32 = OP == wg_f32_tf32;
  constexpr bool f16_out = OP == wg_f16_f16 || OP >= wg_f16_e4m3_e4m3;
  constexpr int K = fp8 ? 32 : tf32 ? 8 : 16;
  constexpr int bytes = fp8 ? 1 : tf32 ? 4 : 2;  // one element of A and B
  __shared__ alignas(128) unsigned char sB[256];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (std::size_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const std::uint32_t* a_t = A + tile * 64 * K;
    const std::uint32_t* b_t = B + tile * K * 8;
    const std::uint32_t* c_t = C + tile * 512;
    std::uint32_t* d_t = D + tile * 512;
    // B (K x 8, row-major words) into the core matrices: element (k, n) at byte
    // (k * bytes / 16) * 128 + n * 16 + (k * bytes) % 16.
    for (int e = threadIdx.x; e < K * 8; e += blockDim.x) {
      const int k = e / 8, n = e % 8, kb = k * bytes;
      unsigned char* p = sB + (kb / 16) * 128 + n * 16 + kb % 16;
      const std::uint32_t w = b_t[k * 8 + n];
      if constexpr (bytes == 1) *p = static_cast<unsigned char>(w);
      if constexpr (bytes == 2) *reinterpret_cast<std::uint16_t*>(p) = static_cast<std::uint16_t>(w);
      if constexpr (bytes == 4) *reinterpret_cast<std::uint32_t*>(p) = w;
    }
    __syncthreads();
    // The generic proxy's stores must be visible to the async proxy that wgmma reads through.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    const std::uint32_t addr = static_cast<std::uint32_t>(__cvta_generic_to_shared(sB));
    const std::uint64_t desc = ((addr & 0x3FFFFu) >> 4) | (std::uint64_t{128 >> 4} << 16) |
                               (std::uint64_t{128 >> 4} << 32);  // no swizzle, base offset 0
    std::uint32_t a[4];
    const int r0 = 16 * warp;
    if constexpr (fp8)
      a_frag8_k32(a_t, r0, g, t, a);
    else if constexpr (tf32)
      a_frag_tf32(a_t, r0, g, t, a);
    else
      a_frag16_k16(a_t, r0, g, t, a);
    if constexpr (f16_out) {
      std::uint32_t d[2];
      for (int r = 0; r < 2; ++r) d[r] = pack16(at(c_t, 8, r0 + g + 8 * r, 2 * t), at(c_t, 8, r0 + g + 8 * r, 2 * t + 1));
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#define FPSCOPE_WG16(SHAPE_TYPES, TAIL)                                                                        \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %7, 0;\nwgmma.mma_async.sync.aligned." SHAPE_TYPES            \
               " {%0,%1}, {%2,%3,%4,%5}, %6, p, 1, 1" TAIL ";\n}\n"                                             \
               : "+r"(d[0]), "+r"(d[1])                                                                         \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)                                  \
               : "memory")
      if constexpr (OP == wg_f16_f16) FPSCOPE_WG16("m64n8k16.f16.f16.f16", ", 0");
      if constexpr (OP == wg_f16_e4m3_e4m3) FPSCOPE_WG16("m64n8k32.f16.e4m3.e4m3", "");
      if constexpr (OP == wg_f16_e4m3_e5m2) FPSCOPE_WG16("m64n8k32.f16.e4m3.e5m2", "");
      if constexpr (OP == wg_f16_e5m2_e4m3) FPSCOPE_WG16("m64n8k32.f16.e5m2.e4m3", "");
      if constexpr (OP == wg_f16_e5m2_e5m2) FPSCOPE_WG16("m64n8k32.f16.e5m2.e5m2", "");
#undef FPSCOPE_WG16
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
      for (int r = 0; r < 2; ++r) {
        d_t[(r0 + g + 8 * r) * 8 + 2 * t] = d[r] & 0xFFFFu;
        d_t[(r0 + g + 8 * r) * 8 + 2 * t + 1] = d[r] >> 16;
      }
    } else {
      float d[4];
      for (int r = 0; r < 4; ++r) d[r] = __uint_as_float(at(c_t, 8, r0 + g + 8 * (r >> 1), 2 * t + (r & 1)));
      asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#define FPSCOPE_WG32(SHAPE_TYPES, TAIL)                                                                        \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %9, 0;\nwgmma.mma_async.sync.aligned." SHAPE_TYPES            \
               " {%0,%1,%2,%3}, {%4,%5,%6,%7}, %8, p, 1, 1" TAIL ";\n}\n"                                       \
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                 \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)                                  \
               : "memory")
      if constexpr (OP == wg_f32_f16) FPSCOPE_WG32("m64n8k16.f32.f16.f16", ", 0");
      if constexpr (OP == wg_f32_bf16) FPSCOPE_WG32("m64n8k16.f32.bf16.bf16", ", 0");
      if constexpr (OP == wg_f32_tf32) FPSCOPE_WG32("m64n8k8.f32.tf32.tf32", "");
      if constexpr (OP == wg_f32_e4m3_e4m3) FPSCOPE_WG32("m64n8k32.f32.e4m3.e4m3", "");
      if constexpr (OP == wg_f32_e4m3_e5m2) FPSCOPE_WG32("m64n8k32.f32.e4m3.e5m2", "");
      if constexpr (OP == wg_f32_e5m2_e4m3) FPSCOPE_WG32("m64n8k32.f32.e5m2.e4m3", "");
      if constexpr (OP == wg_f32_e5m2_e5m2) FPSCOPE_WG32("m64n8k32.f32.e5m2.e5m2", "");
#undef FPSCOPE_WG32
      asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
      asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
      for (int r = 0; r < 4; ++r) d_t[(r0 + g + 8 * (r >> 1)) * 8 + 2 * t + (r & 1)] = __float_as_uint(d[r]);
    }
    __syncthreads();  // sB is rewritten for the next tile
  }
#else
  (void)A, (void)B, (void)C, (void)D, (void)tiles;
  __trap();
#endif
}

template <int OP>
void launch(std::size_t tiles, const std::uint32_t* A, const std::uint32_t* B, const std::uint32_t* C,
            std::uint32_t* D, cudaStream_t s) {
  const int blocks = static_cast<int>(tiles < 4096 ? tiles : 4096);
  if constexpr (OP < wg_f32_f16)
    mma_sync_kernel<OP><<<(blocks + 3) / 4, 128, 0, s>>>(A, B, C, D, tiles);
  else
    wgmma_kernel<OP><<<blocks, 128, 0, s>>>(A, B, C, D, tiles);
  check(cudaGetLastError(), "mma kernel launch");
}

template <int... OPS>
void dispatch(int code, std::size_t tiles, const std::uint32_t* A, const std::uint32_t* B, const std::uint32_t* C,
              std::uint32_t* D, cudaStream_t s, std::integer_sequence<int, OPS...>) {
  ((code == OPS ? launch<OPS>(tiles, A, B, C, D, s) : void()), ...);
}

}  // namespace

const std::vector<mma_device_instruction>& mma_device_instructions() {
  static const std::vector<mma_device_instruction> v = [] {
    std::vector<mma_device_instruction> r;
    for (const entry& e : table) r.push_back(e.info);
    return r;
  }();
  return v;
}

void mma_tiles(const std::string& name, std::size_t tiles, const std::uint32_t* A, const std::uint32_t* B,
               const std::uint32_t* C, std::uint32_t* D, void* stream) {
  const entry* found = nullptr;
  for (const entry& e : table)
    if (name == e.info.name) found = &e;
  if (!found) throw std::invalid_argument("fpscope::cuda: no device kernel for the instruction " + name);
  int dev = 0, major = 0, minor = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev), "cudaDeviceGetAttribute");
  const int sm = 10 * major + minor;
  // wgmma is sm_90a code: it runs on compute capability 9.0 alone.
  if (sm < found->info.min_sm || (found->info.arch_specific && sm != 90))
    throw std::invalid_argument("fpscope::cuda: " + name + " does not run on sm_" + std::to_string(sm));
  if (tiles == 0) return;
  dispatch(found->code, tiles, A, B, C, D, static_cast<cudaStream_t>(stream),
           std::make_integer_sequence<int, wg_f16_e5m2_e5m2 + 1>{});
}

}  // namespace fpscope::cuda
