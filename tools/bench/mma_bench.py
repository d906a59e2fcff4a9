"""A 1024 x 1024 x 1024 GEMM per tensor-core instruction: fpscope.gemm against MMA-Sim (the
oracle, on the CPU) and NumPy's float32 matmul, side by side, all on one core.

MMA-Sim computes the K loop as one call per instruction depth (each D the next C, as a kernel
does; tests/python/test_mma_oracle.py); it is run on the first --mmasim-rows rows of A and its
time scaled to all 1024 rows (its cost is linear in the rows), and those rows are compared bit
for bit with fpscope's. Needs fpscope, mmasim 2.1.1 (torch >= 2.7) and NumPy in one interpreter,
e.g. the PyPI venv of tools/wheel.sh:

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv-pypi/bin/python tools/bench/mma_bench.py
    (or, from a build tree: PYTHONPATH=build/lib/python python tools/bench/mma_bench.py)

Two builds compared (a kernel change): alternate processes, each build's fpscope alone, e.g.
    for r in 1 2; do for t in BASE NEW; do OMP_NUM_THREADS=1 PYTHONPATH=$t/build/lib/python \
        python tools/bench/mma_bench.py --mmasim-rows 0 --only f16,bf16,tf32; done; done
"""

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import fpscope  # noqa: E402

# (arch, instruction) per modelled family and input type.
INSTRUCTIONS = [
    ("volta", "m8n8k4.f32.f16.f16.f32"),
    ("ampere", "m16n8k16.f32.f16.f16.f32"),
    ("ampere", "m16n8k16.f16.f16.f16.f16"),
    ("ampere", "m16n8k16.f32.bf16.bf16.f32"),
    ("ampere", "m16n8k8.f32.tf32.tf32.f32"),
    ("ada", "m16n8k32.f32.e4m3.e4m3.f32"),
    ("hopper", "m16n8k16.f32.f16.f16.f32"),
    ("hopper", "m64n256k16.f32.bf16.bf16"),
    ("hopper", "m64n256k32.f32.e4m3.e4m3"),
    ("hopper", "m64n256k32.f32.e5m2.e4m3"),
    ("blackwell", "m128n256k16.kind::f16.f32.f16.f16"),
    ("blackwell", "m128n256k32.kind::f8f6f4.f32.e4m3.e4m3"),
    ("blackwell", "m128n256k32.kind::f8f6f4.f32.e2m1.e2m1"),
    ("rtx-blackwell", "m16n8k32.kind::f8f6f4.f32.e2m1.e2m1.f32"),
    # block-scaled (random UE8M0 scales 2^-8..2^8, or UE4M3 codes 0x30..0x40): MXFP8/6/4 the
    # integer kernel, MXFP4/NVFP4 their own vector kernel (mma.cpp gemm_grouped_fast)
    ("blackwell", "m128n256k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0"),
    ("blackwell", "m128n256k64.kind::mxf4.block32.f32.e2m1.e2m1.ue8m0"),
    ("blackwell", "m128n256k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3"),
    # bf16 with one A value outside [2^-63, 2^64): the products of such data may leave float32's
    # normal range, so the AVX-512 kernel multiplies normalised significands instead (its NS
    # variant: two more adds a vector).
    ("ampere", "m16n8k16.f32.bf16.bf16.f32", "a[0,0] = 2^-100"),
]

# AMD v_mfma, one row per arithmetic and input type (--only cdna): CDNA1's E_FDPA, CDNA2's
# FTZ_MUL_ADD and the f32 FMA chain are mma_amd.cpp's AVX-512 kernels; CDNA3's fp16/bf16
# (tr_fdpa) is mma.cpp's scalar K loop.
AMD_INSTRUCTIONS = [
    ("cdna1", "f32_32x32x8f16"),
    ("cdna1", "f32_32x32x4bf16"),
    ("cdna2", "f32_32x32x8f16"),
    ("cdna2", "f32_32x32x4bf16"),
    ("cdna2", "f32_32x32x4bf16_1k"),
    ("cdna2", "f32_32x32x2f32"),
    ("cdna3", "f32_32x32x2_f32"),
    # CDNA3 (tr_fdpa / gtr_fdpa): fp16 and fp8/bf8 in vector lanes (mma.cpp gemm_tr_fast), bf16/xf32
    # too where every value lies in [2^-63, 2^64) (these N(0,1) data), else the scalar K loop
    ("cdna3", "f32_32x32x8_f16"),
    ("cdna3", "f32_16x16x32_fp8_fp8"),
    ("cdna3", "f32_32x32x8_bf16"),
]


def values(rng, fmt, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x if fmt == "fp32" else fpscope.decode(fpscope.encode(x, fmt), fmt)  # fp32: AMD's f32 v_mfma


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--mmasim-rows", type=int, default=16, help="rows MMA-Sim computes (0: skip MMA-Sim)")
    ap.add_argument("--only", default="", help="only the instructions whose 'arch inst' contains one of these "
                    "comma-separated words (e.g. f16,bf16,tf32)")
    args = ap.parse_args()
    n = args.size
    rng = np.random.default_rng(0)
    mmasim = None
    if args.mmasim_rows:
        import torch
        from mmasim import nv_ptx

        torch.set_num_threads(1)
        mmasim = (torch, nv_ptx)
        import sys

        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "python"))
        import test_mma_oracle as oracle  # the same calls as the oracle test

    a32 = rng.standard_normal((n, n)).astype(np.float32)
    b32 = rng.standard_normal((n, n)).astype(np.float32)
    t = time.perf_counter()
    a32 @ b32
    t_np = time.perf_counter() - t
    print(f"{n}^3 GEMM, one core; numpy float32 matmul: {t_np:.3f} s")
    print("| arch | instruction | fpscope (s) | MMA-Sim (s, scaled) | MMA-Sim / fpscope | fpscope / numpy | rows compared |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    words = [w for w in args.only.split(",") if w]
    for arch, inst, *tiny in INSTRUCTIONS + AMD_INSTRUCTIONS:
        if words and not any(w in f"{arch} {inst}" for w in words):
            continue
        info = fpscope.mma_info(arch, inst)
        a = values(rng, info["a"], (n, n))
        b = values(rng, info["b"], (n, n))
        if tiny:
            a[0, 0] = 2.0 ** -100
            inst_label = f"{inst} ({tiny[0]})"
        else:
            inst_label = inst
        sa = sb = None
        if info["block"]:
            nb = n // info["block"]
            lo, hi = (0x30, 0x41) if inst.endswith("ue4m3") else (119, 136)
            sa = rng.integers(lo, hi, (n, nb)).astype(np.uint8)
            sb = rng.integers(lo, hi, (nb, n)).astype(np.uint8)
        t = time.perf_counter()
        d = fpscope.gemm(a, b, arch=arch, inst=inst, threads=1, a_scale=sa, b_scale=sb)
        t_fp = time.perf_counter() - t
        t_ms, same = float("nan"), "-"
        if mmasim:
            r = args.mmasim_rows
            c = np.zeros((r, n), np.float32)
            t = time.perf_counter()
            want = oracle.oracle(info, a[:r], b, c, arch, inst, None if sa is None else sa[:r], sb)
            t_ms = (time.perf_counter() - t) * n / r
            got = np.ascontiguousarray(d[:r])
            same = f"{r}: {'bit-identical' if np.array_equal(oracle.bits(want), oracle.bits(got)) else 'DIFFER'}"
        print(f"| {arch} | {inst_label} | {t_fp:.2f} | {t_ms:.0f} | {t_ms / t_fp:.0f}x | {t_fp / t_np:.1f}x | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
