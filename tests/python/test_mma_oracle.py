"""fpscope.gemm against MMA-Sim itself (PyPI mmasim 2.1.1, microsoft/MMA-Sim), bit for bit.

Every modelled (architecture, instruction) runs on the same inputs in both: random codes over each
input format's whole range, typical values, exact cancellations, one huge term against small
ones, subnormals, near-empty rows (the e_zero rule), every special value (+-0, +-inf, NaN,
subnormal extremes, the largest finite values) and C values from binary32's whole range
(overflow to inf included). Several instruction depths of K, so that a result is also the C of
the next step. The outputs are compared as bits; both sides give the canonical NaN (MMA-Sim
fdpa.py:63-71), so NaNs are compared as bits too, except for AMD CDNA1/CDNA2 (and CDNA3's f32), whose models in
MMA-Sim compute in the host's float arithmetic (fma.py, fdpa.py:497-503 e_fdpa, ftz_mul_add.py)
and return its NaN (0xffc00000, or an input's payload): there a NaN is compared as a NaN, fpscope
giving the canonical 0x7fffffff. CDNA1/CDNA2 also get constructed cases of their own (below:
exact cancellation and ties for E_FDPA, the flushes of FTZ_MUL_ADD, FMA rounding).

Needs torch >= 2.7 and mmasim in the same interpreter as fpscope (the PyPI venv, tools/wheel.sh);
without them the run ends with exit status 77, which ctest shows as Skipped.
"""

import functools
import zlib

import numpy as np
import pytest

import fpscope

try:
    import torch
    from mmasim import nv_ptx

    MISSING = None
    from mmasim import amd

    FAMILY = {"mma.sync": nv_ptx.MMA, "wgmma": nv_ptx.WGMMA, "tcgen05.mma": nv_ptx.TCGen05MMA, "v_mfma": amd.MFMA}
    SCALED = {"mma.sync": nv_ptx.MMABlockScale, "tcgen05.mma": nv_ptx.TCGen05MMABlockScale}
except Exception as e:  # noqa: BLE001  (any import failure means: no oracle here)
    MISSING = f"MMA-Sim is not importable here ({e!r}); it needs mmasim 2.1.1 and torch >= 2.7"


@pytest.fixture(autouse=True, scope="module")
def _oracle_present():
    # pytest.exit inside the run (not at collection) ends the session with this status: 77 is
    # ctest's SKIP_RETURN_CODE, so a missing oracle is a visible Skipped, never a pass.
    if MISSING:
        pytest.exit("SKIPPED: " + MISSING, returncode=77)


ARCH_NAME = {"volta": "Volta", "turing": "Turing", "ampere": "Ampere", "ada": "Ada Lovelace", "hopper": "Hopper",
             "blackwell": "Blackwell", "rtx-blackwell": "RTX Blackwell", "cdna1": "CDNA1", "cdna2": "CDNA2",
             "cdna3": "CDNA3"}
CODE_DTYPE = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def instructions():
    out = []
    for arch in fpscope.mma_architectures():
        for name in fpscope.mma_instructions(arch):
            out.append((arch, name.replace("nN", "n8").replace("mM", "m64")))
            if "mM" in name and "kind::f16.f32.f16" in name:  # the other M and a wide N, once
                out.append((arch, name.replace("nN", "n256").replace("mM", "m128")))
    return out


@functools.lru_cache(maxsize=None)
def fp32_sample():
    """float32 (CDNA1/CDNA2 f32 inputs; 2^32 codes are too many to list): random bit patterns over
    the whole range, values in [0.5, 4) with full significands, subnormals, and zeros."""
    rng = np.random.default_rng(32)
    v = np.concatenate([rng.integers(0, 1 << 32, 1 << 15, dtype=np.uint64).astype(np.uint32).view(np.float32),
                        (rng.random(1 << 14) * 3.5 + 0.5).astype(np.float32) * rng.choice([-1, 1], 1 << 14).astype(np.float32),
                        rng.integers(1, 1 << 23, 1 << 12).astype(np.uint32).view(np.float32),
                        np.array([0.0, -0.0], np.float32)])
    return v[np.isfinite(v)]


FP32_INFO = {"bits": 32, "max_finite": 3.4028235e38, "min_normal": 1.1754944e-38, "min_subnormal": 1e-45,
             "has_inf": True, "has_nan": True}


def format_info(fmt):
    return FP32_INFO if fmt == "fp32" else fpscope.format_info(fmt)


def finite_codes(fmt):
    if fmt == "fp32":
        return fp32_sample()
    info = fpscope.format_info(fmt)
    n = 1 << info["bits"]
    codes = np.arange(n, dtype=np.uint32) if n <= 1 << 16 else None
    if codes is None:  # tf32: 2^19 codes, all of them
        codes = np.arange(n, dtype=np.uint32)
    vals = fpscope.decode(codes.astype(CODE_DTYPE[info["storage_bytes"]]), fmt)
    return vals[np.isfinite(vals)]


def specials(fmt):
    info = format_info(fmt)
    v = [0.0, info["max_finite"], info["min_normal"], 1.0]
    if info["min_subnormal"] is not None:
        v += [info["min_subnormal"], info["min_normal"] - info["min_subnormal"]]
    v = v + [-x for x in v]
    if info["has_inf"]:
        v += [np.inf, -np.inf]
    if info["has_nan"]:
        v += [np.nan]
    return np.array(v, np.float32)


def operand(rng, fmt, rows, cols, by_row, pair_sign):
    """rows x cols values of fmt; the pattern of line t (a row of A: by_row; a column of B) by t % 8."""
    fin = finite_codes(fmt)
    sp = specials(fmt)
    if fmt.endswith("fnuz"):
        # CDNA3 fp8/bf8: MMA-Sim 2.1.1's gtr_fdpa loses some NaN operands (measured: with
        # f32_16x16x32_fp8_fp8, a NaN at an odd position of K gives a finite D, one at an even
        # position NaN), so NaN operands are not compared here; fpscope gives NaN for every one.
        sp = sp[~np.isnan(sp)]
    info = format_info(fmt)
    typical = fin[(np.abs(fin) >= 0.5) & (np.abs(fin) < 4)]
    sub = fin[(fin != 0) & (np.abs(fin) < info["min_normal"])]
    x = np.empty((rows, cols), np.float32)
    lines = rows if by_row else cols
    for t in range(lines):
        kind = t % 8
        n = cols if by_row else rows
        if kind in (0, 1):
            v = rng.choice(fin, n)
        elif kind == 2:
            v = rng.choice(typical, n)
        elif kind == 3:  # exact cancellation: element 2s+1 repeats (A) or negates (B) element 2s
            v = rng.choice(typical, n)
            v[1::2] = pair_sign * v[0::2][: len(v[1::2])]
        elif kind == 4:
            v = rng.choice(fin, n)
            hit = rng.random(n) < 0.15
            v[hit] = rng.choice(sp, hit.sum())
        elif kind == 5:  # one huge term against small ones
            v = rng.choice(typical, n) * np.float32(2.0) ** -rng.integers(0, 8, n)
            if fmt != "fp32":
                v = fpscope.decode(fpscope.encode(v.astype(np.float32), fmt), fmt)
            v[rng.integers(0, n)] = info["max_finite"] * (1 if rng.random() < 0.5 else -1)
        elif kind == 6:
            v = rng.choice(sub if len(sub) else fin, n)
        else:  # nearly empty: zeros and a few of the smallest
            v = np.zeros(n, np.float32)
            hit = rng.random(n) < 0.2
            v[hit] = rng.choice(fin[np.abs(fin) <= np.sort(np.abs(fin[fin != 0]))[3]], hit.sum())
        v = v.astype(np.float32)
        if by_row:
            x[t, :] = v
        else:
            x[:, t] = v
    return x


def c_values(rng, fmt, m, n):
    if fmt == "fp32":
        e = rng.integers(-150, 128, (m, n))
        c = (rng.random((m, n)) + 1.0) * np.exp2(e.astype(np.float64))
        c = np.where(rng.random((m, n)) < 0.5, -c, c).astype(np.float32)  # 2^128 and up: inf
        near = rng.random((m, n)) < 0.3
        c[near] = (rng.standard_normal(near.sum()) * 4).astype(np.float32)
        sp = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38, 1e-45, 1.1754942e-38],
                      np.float32)
        hit = rng.random((m, n)) < 0.1
        c[hit] = rng.choice(sp, hit.sum())
        return c
    fin = finite_codes(fmt)
    c = rng.choice(fin, (m, n)).astype(np.float32)
    hit = rng.random((m, n)) < 0.1
    c[hit] = rng.choice(specials(fmt), hit.sum())
    return c


def to_torch(x, fmt, ptx):
    """Values of fmt as MMA-Sim takes them (mmasim/nv_ptx/isa_common.py:3-16, arithmetic/helper.py:37-45)."""
    if fmt in ("fp32", "tf32"):
        return torch.from_numpy(x.copy())
    if fmt in ("fp16", "bf16"):
        codes = fpscope.encode(x, fmt).view(np.int16)
        return torch.from_numpy(codes.copy()).view(torch.float16 if fmt == "fp16" else torch.bfloat16)
    codes = fpscope.encode(x, fmt).astype(np.uint8)
    if fmt == "e4m3":
        return torch.from_numpy(codes).view(torch.float8_e4m3fn)
    if fmt == "e5m2":
        return torch.from_numpy(codes).view(torch.float8_e5m2)
    if fmt in ("e4m3fnuz", "e5m2fnuz"):  # AMD CDNA3's fp8/bf8 (mmasim/amd/isa_mfma.py:11-12)
        return torch.from_numpy(codes).view(torch.float8_e4m3fnuz if fmt == "e4m3fnuz" else torch.float8_e5m2fnuz)
    if fmt == "e2m1":  # FP4 sits in bits 5:2 of its byte (helper.py:54)
        codes = codes << 2
    return torch.from_numpy(codes)


def bits(x):
    x = np.ascontiguousarray(x)
    return x.view(np.uint16 if x.dtype == np.float16 else np.uint32)


def oracle(info, a, b, c, arch, inst, a_scale=None, b_scale=None):
    """The K loop as a kernel runs it: one MMA-Sim call per instruction depth, each D the next C.
    (One call with a longer K would not do: MMA-Sim then fuses min(K, L_max) products per step,
    more than an instruction of depth k < L_max can.) Block-scaled: each call gets its block's
    scales (k = block = 32), as UE8M0 (mmasim/nv_ptx/isa_common.py:12)."""
    op = (SCALED if info["block"] else FAMILY)[info["family"]](ARCH_NAME[arch], inst)
    k = info["k"]
    d = to_torch(c, info["c"], None)
    e8m0 = lambda x: torch.from_numpy(np.ascontiguousarray(x)).view(torch.float8_e8m0fnu)  # noqa: E731
    # MXFP4/NVFP4 (mxf4*): MMA-Sim unpacks two FP4 codes a byte (helper.py:269-274) but takes any
    # float tensor as it is (fdpa.py:295-298): the values go in as float16, exactly.
    grouped = "kind::mxf4" in inst
    operand = (lambda x, fmt: torch.from_numpy(x.astype(np.float16))) if grouped else (lambda x, fmt: to_torch(x, fmt, None))
    ue4m3 = inst.endswith("ue4m3")
    scale = (lambda x: torch.from_numpy(np.ascontiguousarray(x)).view(torch.float8_e4m3fn)) if ue4m3 else e8m0
    for k0 in range(0, a.shape[1], k):
        args = [operand(a[:, k0:k0 + k], info["a"]), operand(b[k0:k0 + k], info["b"]), d]
        if info["block"]:
            blk, nb = k0 // info["block"], k // info["block"]
            args += [scale(a_scale[:, blk:blk + nb]), scale(b_scale[blk:blk + nb, :])]
        d = op(*args)
    return d.numpy()


def scales(rng, rows, cols, ue4m3=False):
    """UE8M0 codes around 2^0, with the extremes 2^-127 and 2^127 (0xFF, NaN, is refused); UE4M3:
    every code but the NaN, sign bit set at random (the hardware ignores it)."""
    if ue4m3:
        s = rng.integers(0, 0x7F, (rows, cols)).astype(np.uint8)
        return s | (rng.integers(0, 2, (rows, cols)).astype(np.uint8) << 7)
    s = (127 + rng.integers(-24, 25, (rows, cols))).astype(np.uint8)
    hit = rng.random((rows, cols)) < 0.1
    s[hit] = rng.choice(np.array([0, 1, 254, 200, 60], np.uint8), hit.sum())
    return s


def mismatches(arch, inst, seed, steps=4):
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(seed)
    if info["c"] != info["d"]:
        steps = 1  # D (f32) cannot be the next instruction's C (f16)
    m, n, k = info["m"], info["n"], info["k"] * steps
    if info["family"] == "mma.sync":
        m *= 2
    a = operand(rng, info["a"], m, k, True, 1)
    b = operand(rng, info["b"], k, n, False, -1)
    c = c_values(rng, info["c"], m, n)
    sa = sb = None
    if info["block"]:
        u = inst.endswith("ue4m3")
        sa, sb = scales(rng, m, k // info["block"], u), scales(rng, k // info["block"], n, u)
    want = bits(oracle(info, a, b, c, arch, inst, sa, sb))
    got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst, a_scale=sa, b_scale=sb))
    want = host_nan(info, want)
    bad = np.argwhere(want != got)
    return want.size, bad, want, got


def host_nan(info, want):
    """CDNA1/CDNA2, CDNA3 f32 (not fdpa): MMA-Sim's NaN is the host's (module docstring); compared as a NaN."""
    if info["arithmetic"] == "fdpa" or want.dtype != np.uint32:
        return want
    return np.where((want & 0x7FFFFFFF) > 0x7F800000, np.uint32(0x7FFFFFFF), want)


@functools.lru_cache(maxsize=None)
def exact_pow2(fmt, x):
    """Whether 2^x is a value of fmt."""
    v = np.array([2.0 ** x], np.float32)
    if not np.isfinite(v[0]) or v[0] == 0:
        return False
    return bool(fpscope.decode(fpscope.encode(v, fmt), fmt)[0] == v[0])


def factor(info, t):
    """(a, b) powers of two of the input formats with a * b = 2^t, or None; balanced, so that the
    product's exponent (the sum of its factors', each at least its format's emin) is as small as
    it can be."""
    for x in sorted(range(-160, 40), key=lambda x: abs(2 * x - t)):
        if exact_pow2(info["a"], x) and exact_pow2(info["b"], t - x):
            return 2.0 ** x, 2.0 ** (t - x)
    return None


def probes(info):
    """Alignment probes of the e_zero rule (MMA-Sim fdpa.py:100): C = 0, products P1 and P2, the
    rest zeros, so that e_max is e_zero. P1 sits at the output's smallest step (or half of it, a
    tie); P2 = +-2^t for t at e_zero - F and one either side, where one bit more or less of the
    alignment changes the rounded result. Returns A (m x k), B (k x n) with probe r on row r and
    column r % n."""
    m, n, k = info["m"], info["n"], info["k"]
    q = -24 if info["d"] == "fp16" else -149  # the output's smallest subnormal exponent
    a = np.zeros((m, k), np.float32)
    b = np.zeros((k, n), np.float32)
    row = 0
    for t1 in (q, q - 1):
        for t2 in (info["e_zero"] - info["F"] + d for d in (-1, 0, 1)):
            for s2 in (1.0, -1.0):
                f1, f2 = factor(info, t1), factor(info, t2)
                if f1 is None or f2 is None or row >= min(m, n) or k < 3:
                    continue
                a[row, 0], b[0, row % n] = f1
                a[row, 1], b[1, row % n] = f2[0], s2 * f2[1]
                row += 1
    return a, b, row


CASES = instructions()


def test_every_modelled_instruction_is_in_the_oracle_run():
    # Covers what issue 17 names first: mma.sync fp16/bf16/tf32 on Volta, Ampere, Hopper; wgmma
    # fp16/bf16/e4m3/e5m2 on Hopper; tcgen05 e4m3/e5m2 on Blackwell.
    names = {(a, i) for a, i in CASES}
    for need in [("volta", "m8n8k4.f32.f16.f16.f32"), ("ampere", "m16n8k16.f32.bf16.bf16.f32"),
                 ("ampere", "m16n8k8.f32.tf32.tf32.f32"), ("hopper", "m16n8k16.f16.f16.f16.f16"),
                 ("hopper", "m64n8k32.f32.e4m3.e5m2"), ("blackwell", "m64n8k32.kind::f8f6f4.f32.e4m3.e4m3")]:
        assert need in names
    assert len(CASES) > 200
    assert sum("mxf8f6f4" in i for _, i in CASES) == 50  # block-scaled: 25 type pairs x (rtx-blackwell, blackwell)
    assert sum("kind::mxf4" in i for _, i in CASES) == 8  # MXFP4/NVFP4: 4 kinds x 2
    assert sum(a == "cdna3" for a, _ in CASES) == 25  # v_mfma f32, fp16, bf16, xf32, fp8/bf8
    # CDNA1: 5 shapes each of f32, f16, bf16; CDNA2: those and 5 bf16_1k (isa_mfma.py:16-46)
    assert sum(a == "cdna1" for a, _ in CASES) == 15
    assert sum(a == "cdna2" for a, _ in CASES) == 20
    arith = {(a, i): fpscope.mma_info(a, i)["arithmetic"] for a, i in CASES if a in ("cdna1", "cdna2")}
    assert sorted(set(arith.values())) == ["e_fdpa", "fma", "ftz_mul_add"]
    assert arith[("cdna2", "f32_32x32x4bf16")] == "ftz_mul_add" and fpscope.mma_info("cdna2", "f32_32x32x4bf16")["L"] == 2
    assert fpscope.mma_info("cdna2", "f32_32x32x4bf16_1k")["L"] == 4


@pytest.mark.parametrize("arch,inst", CASES, ids=[f"{a}:{i}" for a, i in CASES])
def test_bit_exact_against_mmasim(arch, inst):
    total, bad, want, got = mismatches(arch, inst, seed=zlib.crc32(f"{arch}:{inst}".encode()))
    assert total > 0
    assert len(bad) == 0, (f"{len(bad)} of {total} results differ; first at {tuple(bad[0])}: "
                           f"MMA-Sim {want[tuple(bad[0])]:#x}, fpscope {got[tuple(bad[0])]:#x}")


# Only where a product of the inputs reaches e_zero - F (fp16/bf16/tf32 inputs with an f16 output,
# bf16/tf32 with f32); elsewhere the rule cannot change a result.
PROBE_CASES = [(a, i) for a, i in CASES if not fpscope.mma_info(a, i)["F2"]
               and fpscope.mma_info(a, i)["arithmetic"] == "fdpa" and probes(fpscope.mma_info(a, i))[2] > 0]


def test_probes_exist():
    assert len(PROBE_CASES) >= 30


@pytest.mark.parametrize("arch,inst", PROBE_CASES, ids=[f"{a}:{i}" for a, i in PROBE_CASES])
def test_e_zero_alignment_probes(arch, inst):
    info = fpscope.mma_info(arch, inst)
    a, b, used = probes(info)
    c = np.zeros((info["m"], info["n"]), np.float32)
    sa = sb = None
    if info["block"]:  # unit scales
        one = 0x38 if inst.endswith("ue4m3") else 127
        nb = info["k"] // info["block"]
        sa, sb = np.full((info["m"], nb), one, np.uint8), np.full((nb, info["n"]), one, np.uint8)
    want = bits(oracle(info, a, b, c, arch, inst, sa, sb))
    got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst, a_scale=sa, b_scale=sb))
    bad = np.argwhere(want != got)
    assert len(bad) == 0, f"{len(bad)} probes differ; first at {tuple(bad[0])}"


# AMD CDNA1/CDNA2 constructed cases: (the products' a and b, C), each on one row of A, one column
# of B and the C on the diagonal. A case whose values are not all of an instruction's input type is
# left out for that instruction. What each shows, as MMA-Sim 2.1.1 computes it (amd/sim.py:10-27):
FMAX = float(np.float32(3.4028235e38))
CDNA12_CASES = [
    ([2.0**100, 2.0**100], [2.0**100, -2.0**100], 1.0),  # exact cancellation of huge products
    ([1.0, 2.0**-60], [2.0**-24, 1.0], 1.0),             # a tie of 1 + 2^-24 broken up by a far term
    ([1.0, -2.0**-60], [2.0**-24, 1.0], 1.0),            # ... and down
    ([1.0], [2.0**-24], 1.0),                            # the tie itself: to even
    ([1.0], [3 * 2.0**-25], 1.0),                        # above the tie
    ([2.0**103, -2.0**43], [1.0, 1.0], FMAX),            # E_FDPA: float64 sum at the overflow threshold: inf
    ([2.0**127, 1.5 * 2.0**73], [1.0, 1.0], 2.0**127 - 2.0**103),  # exact sum just beyond it
    ([2.0**103, -2.0**80], [1.0, 1.0], FMAX),            # just below it: the largest finite
    ([-(2.0**-100)], [2.0**-50], 0.0),                   # a negative sum rounding to zero: -0 (E_FDPA)
    ([-0.0, -0.0], [1.0, 1.0], -0.0),                    # zeros of sign -: +0 in every model
    ([-0.0], [1.0], 0.0),
    ([2.0**-75], [2.0**-75], 0.0),                       # 2^-150: half the smallest subnormal, tie to 0
    ([2.0**-75, 2.0**-100], [2.0**-75, 2.0**-100], 0.0),  # ... broken up
    ([1.5, 1.0], [1.0, -(2.0**-30)], -1.5),              # cancellation leaving a far term
    ([float("inf"), 1.0], [0.0, 1.0], 1.0),              # inf * 0
    ([float("inf"), float("-inf")], [1.0, 1.0], 0.0),    # inf - inf
    ([float("inf")], [1.0], float("-inf")),
    ([float("inf")], [2.0], 5.0),
    ([float("nan")], [1.0], 1.0),
    ([1.0], [1.0], float("nan")),
    ([2.0**-20], [2.0**10], 1.0),                        # fp16 subnormal input: flushed on CDNA2
    ([2.0**-130], [2.0**60], 1.0),                       # bf16/fp32 subnormal input
    ([2.0**-70], [2.0**-70], 0.0),                       # subnormal product: flushed to +0 on CDNA2
    ([2.0**-60, 2.0**-63], [2.0**-67, 2.0**-63], 0.0),   # a subnormal product 2^-127 next to 2^-126: gone
    ([-(2.0**-60), 2.0**-63], [2.0**-67, -(2.0**-63)], 1.0),
    ([-(2.0**-70)], [2.0**-70], 0.0),                    # ... to -0, then -0 + 0
    ([-(2.0**-70)], [2.0**-70], -0.0),                   # C = -0 is flushed to +0 too (keep_sign=False)
    ([-(2.0**-70), -(2.0**-70)], [2.0**-70, 2.0**-70], -0.0),  # ... which -0 + -0 products would keep
    ([-(2.0**-70)] * 4, [2.0**-70] * 4, -(2.0**-130)),
    ([0.0], [0.0], -(2.0**-130)),                        # subnormal C: +0 on CDNA2
    ([0.0], [0.0], 2.0**-149),
    ([1.5 * 2.0**-63, -(2.0**-63)], [2.0**-63, 2.0**-63], 0.0),  # a subnormal sum 2^-127: flushed
    ([-1.5 * 2.0**-63, 2.0**-63], [2.0**-63, 2.0**-63], 2.0**-126),  # -2^-127 + 2^-126
    ([2.0**-24, 2.0**-24, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], 0.0),  # CDNA2's pairing (p0+p1)+(p2+p3)
    ([1.0, 2.0**-24, 2.0**-24, 0.0], [1.0, 1.0, 1.0, 0.0], 0.0),
    ([2.0**-24, 2.0**-24, 2.0**-24, 2.0**-24], [1.0, 1.0, 1.0, 1.0], 1.0),
    ([1.0 + 2.0**-23], [1.0 - 2.0**-23], -1.0),          # fp32 FMA: -2^-46, not 0
    ([1.0 + 2.0**-23, 1.0 + 2.0**-23], [1.0 + 2.0**-23, -(1.0 + 2.0**-23)], 0.0),  # the chain's order
    ([2.0**-149], [0.5], 0.0),                           # fp32 subnormal product: tie to 0
    ([3 * 2.0**-149], [0.5], 0.0),                       # 1.5 * 2^-149: to even, 2^-148
    ([2.0**100], [2.0**100], 0.0),                       # beyond binary32: inf
    ([2.0**100, 2.0**100], [2.0**100, -(2.0**100) * (1 - 2.0**-7)], 0.0),  # 2^193: inf in E_FDPA's float64 sum
]


def representable(x, fmt):
    v = np.array([x], np.float32)
    if float(v[0]) != x and not np.isnan(x):
        return False
    if fmt == "fp32" or not np.isfinite(v[0]):
        return True
    return bool(fpscope.decode(fpscope.encode(v, fmt), fmt)[0] == v[0])


def cancellation_cases(rng, fmt, count):
    """Random near-cancellations: a0 b0 against -(a0 (1 + small)) b0 rounded to the format, with a C
    of a random scale, so that the exact sum is far below its terms and its rounding decides."""
    fin = finite_codes(fmt)
    typical = fin[(np.abs(fin) >= 0.5) & (np.abs(fin) < 4)]
    out = []
    for _ in range(count):
        a0, b0 = (float(x) for x in rng.choice(typical, 2))
        a1 = a0 * (1 + float(rng.integers(-4, 5)) * 2.0**-8)
        a1 = float(fpscope.decode(fpscope.encode(np.array([a1], np.float32), fmt), fmt)[0]) if fmt != "fp32" else a1
        c = float(np.float32(rng.standard_normal() * 2.0 ** float(rng.integers(-40, 1))))
        out.append(([a0, a1, a0, -a0], [b0, -b0, 2.0**-12, 2.0**-12], c))
    return out


CDNA12 = [(a, i) for a, i in CASES if fpscope.mma_info(a, i)["arithmetic"] != "fdpa"]  # CDNA3's f32 too


@pytest.mark.parametrize("arch,inst", CDNA12, ids=[f"{a}:{i}" for a, i in CDNA12])
def test_cdna12_constructed_cases(arch, inst):
    info = fpscope.mma_info(arch, inst)
    m, n, k = info["m"], info["n"], info["k"]
    K = max(k, 4)
    cases = [cs for cs in CDNA12_CASES + cancellation_cases(np.random.default_rng(zlib.crc32(inst.encode())), info["a"], 24)
             if all(representable(x, info["a"]) for x in cs[0] + cs[1]) and len(cs[0]) <= K]
    assert len(cases) >= 28, len(cases)  # most of them apply to every type
    rows = min(m, n)
    compared = 0
    for s in range(0, len(cases), rows):
        a = np.zeros((m, K), np.float32)
        b = np.zeros((K, n), np.float32)
        c = np.zeros((m, n), np.float32)
        for r, (av, bv, cv) in enumerate(cases[s:s + rows]):
            a[r, :len(av)], b[:len(bv), r], c[r, r] = av, bv, cv
        want = host_nan(info, bits(oracle(info, a, b, c, arch, inst)))
        got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst))
        bad = np.argwhere(want != got)
        assert len(bad) == 0, (f"{len(bad)} results differ; first at {tuple(bad[0])} (case {s + bad[0][0]}): "
                               f"MMA-Sim {want[tuple(bad[0])]:#x}, fpscope {got[tuple(bad[0])]:#x}")
        compared += want.size
    assert compared >= len(cases)


@pytest.mark.parametrize("arch,inst", CDNA12, ids=[f"{a}:{i}" for a, i in CDNA12])
def test_cdna12_sums_of_negative_zeros(arch, inst):
    # Every term -0 in every step (the cases above leave +0 padding in a row's later steps, which
    # makes any sum +0): E_FDPA's exact zero is +0 whatever the zeros' signs, the FMA chain keeps
    # -0, CDNA2 flushes -0 inputs and C to +0. Rows: A all -0 (or +0 against B's -1); C -0.
    info = fpscope.mma_info(arch, inst)
    m, n, k = info["m"], info["n"], 2 * info["k"]
    a = np.full((m, k), -0.0, np.float32)
    a[1::2] = 0.0
    b = np.ones((k, n), np.float32)
    b[:, 1::2] = -1.0
    c = np.full((m, n), -0.0, np.float32)
    want = host_nan(info, bits(oracle(info, a, b, c, arch, inst)))
    got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst))
    assert np.array_equal(want, got), (arch, inst, np.unique(want), np.unique(got))
    assert (want == 0x80000000).any() or info["arithmetic"] != "fma"  # the FMA chain's -0 is there


def test_cdna2_flushes_what_cdna1_keeps():
    # The cases above hold by themselves; this shows they exercise the difference: a subnormal
    # fp16 input and a subnormal bf16 product change CDNA1's result and not CDNA2's.
    for inst, av, bv in [("f32_16x16x16f16", 2.0**-20, 2.0**10), ("f32_16x16x8bf16", 2.0**-70, 2.0**-70)]:
        info = fpscope.mma_info("cdna1", inst)
        a = np.zeros((16, info["k"]), np.float32)
        b = np.zeros((info["k"], 16), np.float32)
        a[0, 0], b[0, 0] = av, bv
        c = np.zeros((16, 16), np.float32)
        d1 = fpscope.gemm(a, b, c, arch="cdna1", inst=inst)[0, 0]
        d2 = fpscope.gemm(a, b, c, arch="cdna2", inst=inst)[0, 0]
        assert d1 == np.float32(av * bv) and d2 == 0, (inst, d1, d2)


@pytest.mark.parametrize("arch,inst", [("cdna1", "f32_32x32x2bf16"), ("cdna2", "f32_32x32x2bf16")])
def test_cdna12_near_binary32_overflow(arch, inst):
    # bf16 products from 2^60 to 2^128 against C within a few ulps of the largest float32, both
    # signs: where CDNA1's E_FDPA takes MMA-Sim's float64 sum (its overflow rule) and where the
    # exact sum rounds; CDNA2's binary32 adds overflow. 10 x 1024 results.
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(zlib.crc32(inst.encode()) + len(arch))
    q = lambda x: fpscope.decode(fpscope.encode(np.asarray(x, np.float32), "bf16"), "bf16")  # noqa: E731
    compared = inf = 0
    for _ in range(10):
        e = rng.integers(60, 128, (32, 4)).astype(np.float64)
        a = q(rng.choice([-1.0, 1.0], (32, 4)) * (1 + rng.integers(0, 128, (32, 4)) / 128.0) * np.exp2(e))
        b = q(np.exp2(rng.integers(-30, 2, (4, 32)).astype(np.float64)) * rng.choice([-1.0, 1.0], (4, 32)))
        c = (np.float32(3.4028235e38) * rng.choice([-1, 1], (32, 32))
             * (1 - rng.integers(0, 4, (32, 32)) * 2.0**-24)).astype(np.float32)
        want = host_nan(info, bits(oracle(info, a, b, c, arch, inst)))
        got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst))
        bad = np.argwhere(want != got)
        assert len(bad) == 0, f"{len(bad)} results differ; first at {tuple(bad[0])}"
        compared += want.size
        inf += int(((want & 0x7FFFFFFF) == 0x7F800000).sum())
    assert compared == 10 * 1024 and 0 < inf < compared  # both sides of the threshold were reached


# Shapes that the instructions' own do not reach, for the kernels' tiling (issue 17's AVX-512
# kernel: 16 columns a vector, four, two or one rows at a time, tiles of 8 x 64): an odd m (a
# last single row), n over a tile and not a multiple of 16 (a last chunk of 3 columns), several
# steps; the operands are mismatches()'s, so specials and subnormals fall in every chunk. One
# instruction per kernel variant: sums in 32 bits (ampere f16), in runs widened to 64 (hopper
# F = 25, L = 16), RNE-FP16 with the zero-product test (f16 output), RZ-E8M13 (hopper e4m3), FP4,
# normalised significands (bf16, tf32 with their subnormals and extremes), Volta's short step.
SHAPE_CASES = [("ampere", "m16n8k16.f32.f16.f16.f32"), ("hopper", "m16n8k16.f32.f16.f16.f32"),
               ("ampere", "m16n8k16.f16.f16.f16.f16"), ("hopper", "m64n8k32.f32.e4m3.e5m2"),
               ("rtx-blackwell", "m16n8k32.kind::f8f6f4.f32.e2m1.e2m1.f32"), ("ampere", "m16n8k16.f32.bf16.bf16.f32"),
               ("ampere", "m16n8k8.f32.tf32.tf32.f32"), ("volta", "m8n8k4.f32.f16.f16.f32"),
               # CDNA3's vector lanes (mma.cpp tr_rows: four rows or one, f16 tr_fdpa, fp8/bf8 gtr_fdpa)
               ("cdna3", "f32_32x32x8_f16"), ("cdna3", "f32_16x16x16_f16"), ("cdna3", "f32_16x16x32_fp8_fp8"),
               ("cdna3", "f32_32x32x16_bf8_fp8")]


def same_as_mmasim(info, a, b, c, arch, inst, sa=None, sb=None):
    want = bits(oracle(info, a, b, c, arch, inst, sa, sb))
    got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst, a_scale=sa, b_scale=sb))
    bad = np.argwhere(want != got)
    assert want.size == a.shape[0] * b.shape[1]
    assert len(bad) == 0, (f"{len(bad)} of {want.size} results differ; first at {tuple(bad[0])}: "
                           f"MMA-Sim {want[tuple(bad[0])]:#x}, fpscope {got[tuple(bad[0])]:#x}")


GROUPED_CASES = [(a, i) for a, i in CASES if "kind::mxf4" in i]


def grouped_scales(rng, info, inst, m, n, k):
    u = inst.endswith("ue4m3")
    return scales(rng, m, k // info["block"], u), scales(rng, k // info["block"], n, u)


@pytest.mark.parametrize("arch,inst", SHAPE_CASES + GROUPED_CASES,
                         ids=[f"{a}:{i}" for a, i in SHAPE_CASES + GROUPED_CASES])
def test_odd_shapes_against_mmasim(arch, inst):
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(zlib.crc32(f"shapes:{arch}:{inst}".encode()))
    m, n, k = 37, 83, info["k"] * 3
    a = operand(rng, info["a"], m, k, True, 1)
    b = operand(rng, info["b"], k, n, False, -1)
    c = c_values(rng, info["c"], m, n)
    scl = grouped_scales(rng, info, inst, m, n, k) if info["block"] else (None, None)
    same_as_mmasim(info, a, b, c, arch, inst, *scl)


PROMOTE_CASES = (SHAPE_CASES[:2] + SHAPE_CASES[3:4] + SHAPE_CASES[5:6] + SHAPE_CASES[9:10] + SHAPE_CASES[11:12]
                 + GROUPED_CASES[:1] + GROUPED_CASES[-1:])


@pytest.mark.parametrize("arch,inst", PROMOTE_CASES, ids=[f"{a}:{i}" for a, i in PROMOTE_CASES])
def test_promotion_against_mmasim(arch, inst):
    # DeepSeek-V3's promotion: each group of `promote` from a zero accumulator (the kernels' runs
    # that start past K's first step), added into the float32 total in nearest-even: here by
    # NumPy's float32 add on MMA-Sim's group results.
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(zlib.crc32(f"promote:{arch}:{inst}".encode()))
    m, n, k, promote = 19, 40, info["k"] * 4, info["k"] * 2
    a = operand(rng, info["a"], m, k, True, 1)
    b = operand(rng, info["b"], k, n, False, -1)
    c = c_values(rng, info["c"], m, n)
    sa, sb = grouped_scales(rng, info, inst, m, n, k) if info["block"] else (None, None)
    total = c.copy()
    with np.errstate(invalid="ignore", over="ignore"):
        for g0 in range(0, k, promote):
            scl = []
            if info["block"]:  # the group's blocks of scales
                bl, nb = g0 // info["block"], promote // info["block"]
                scl = [sa[:, bl:bl + nb], sb[bl:bl + nb]]
            part = oracle(info, a[:, g0:g0 + promote], b[g0:g0 + promote], np.zeros((m, n), np.float32), arch, inst,
                          *scl)
            total = (total + part).astype(np.float32)
    total[np.isnan(total)] = np.frombuffer(np.uint32(0x7FFFFFFF).tobytes(), np.float32)[0]
    got = bits(fpscope.gemm(a, b, c, arch=arch, inst=inst, promote=promote, a_scale=sa, b_scale=sb))
    bad = np.argwhere(bits(total) != got)
    assert got.size == m * n
    assert len(bad) == 0, f"{len(bad)} of {got.size} results differ; first at {tuple(bad[0])}"


# bf16 and tf32 run in the float32 lanes when every A and B value lies in [2^-63, 2^64) (their
# products then normal float32 numbers; mma.cpp in_half_range): mismatches()'s operands with the
# values outside that range replaced by typical ones, the range's ends 2^-63 and (2 - 2^-7) 2^63
# (bf16; tf32 (2 - 2^-10) 2^63) put in, specials kept; C over binary32's whole range. The
# instructions' own shapes and the odd ones.
RANGE_CASES = [("ampere", "m16n8k16.f32.bf16.bf16.f32"), ("ampere", "m16n8k8.f32.tf32.tf32.f32"),
               ("hopper", "m64n256k16.f32.bf16.bf16"), ("hopper", "m64n8k8.f32.tf32.tf32"),
               ("blackwell", "m64n8k16.kind::f16.f32.bf16.bf16"),
               ("cdna3", "f32_32x32x8_bf16"), ("cdna3", "f32_16x16x8_xf32")]  # CDNA3's vector lanes by their data


def in_range(rng, x, fmt):
    top = np.float32((2 - 2.0 ** -{"bf16": 7, "tf32": 10}[fmt]) * 2.0 ** 63)
    mag = np.abs(x)
    out = np.isfinite(x) & (x != 0) & ((mag < 2.0 ** -63) | (mag > top))
    typical = fpscope.decode(fpscope.encode(rng.standard_normal(x.shape).astype(np.float32), fmt), fmt)
    x = np.where(out, typical, x).astype(np.float32)
    flat = x.reshape(-1)
    at = rng.choice(flat.size, 4, replace=False)
    flat[at] = [2.0 ** -63, -(2.0 ** -63), top, -top]
    return x


@pytest.mark.parametrize("shape", ["inst", "odd"])
@pytest.mark.parametrize("arch,inst", RANGE_CASES, ids=[f"{a}:{i}" for a, i in RANGE_CASES])
def test_bf16_tf32_in_float32_range_against_mmasim(arch, inst, shape):
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(zlib.crc32(f"range:{arch}:{inst}:{shape}".encode()))
    m, n = (info["m"] * 2, info["n"]) if shape == "inst" else (37, 83)
    k = info["k"] * (1 if info["c"] != info["d"] else 4)
    a = in_range(rng, operand(rng, info["a"], m, k, True, 1), info["a"])
    b = in_range(rng, operand(rng, info["b"], k, n, False, -1), info["b"])
    c = c_values(rng, info["c"], m, n)
    same_as_mmasim(info, a, b, c, arch, inst)


# MXFP4/NVFP4 (gst_fdpa) run in their own vector kernel (mma.cpp fp4_rows: group sums as a float32
# GEMM, eight rows x 16 columns a task, the terms' exponents beside their values). Its edges: odd
# shapes (37 rows = 4 x 8 + 4 + 1, a last chunk of 3 columns) and promotion (above, GROUPED_CASES
# there), and the scales' and the groups' extremes below.
@pytest.mark.parametrize("arch,inst", GROUPED_CASES, ids=[f"{a}:{i}" for a, i in GROUPED_CASES])
def test_grouped_extremes_against_mmasim(arch, inst):
    """Scales at their extremes together (UE8M0 2^-127 and 2^127 on both sides: scale products
    2^-254, far below e_zero = -139, next to 2^254, beyond binary32; UE4M3 zero, the smallest
    subnormal and 448), groups whose products are all zero (a zero A group, a zero B group, and
    A's and B's nonzero elements at disjoint positions: no zero operand group, every product
    zero), a group whose nonzero products cancel exactly, whole zero rows and columns."""
    info = fpscope.mma_info(arch, inst)
    rng = np.random.default_rng(zlib.crc32(f"extremes:{arch}:{inst}".encode()))
    m, n, k = 21, 35, info["k"] * 4
    a = operand(rng, info["a"], m, k, True, 1)
    b = operand(rng, info["b"], k, n, False, -1)
    a[a == 0] = 1.5
    b[b == 0] = -0.5
    a[1, 16:32] = 0  # a zero A group
    b[32:48, :] = np.where(np.arange(n) % 3 == 0, 0, b[32:48, :])  # zero B groups
    even = np.arange(16) % 2 == 0
    a[2:6, 64:80] = np.where(even, a[2:6, 64:80], 0)  # disjoint: A at even, B at odd positions
    b[64:80, :] = np.where(even[:, None], 0, b[64:80, :])
    a[6, 80:96] = np.tile([2.0, 3.0], 8)  # nonzero products that cancel exactly (B: +-1 pairs)
    b[80:96, 5] = np.tile([1.0, -1.0], 8)
    a[7, :] = 0
    b[:, 7] = 0
    c = c_values(rng, info["c"], m, n)
    c[rng.random((m, n)) < 0.3] = 0
    nb = k // info["block"]
    if inst.endswith("ue4m3"):
        pick = np.array([0x00, 0x80, 0x01, 0x7E, 0xFE, 0x38, 0x08], np.uint8)
    else:
        pick = np.array([0, 254, 0, 254, 127, 1, 253], np.uint8)
    sa, sb = rng.choice(pick, (m, nb)), rng.choice(pick, (nb, n))
    sa[8:12], sb[:, 8:12] = pick[0], pick[0]  # the smallest scales everywhere there
    sa[12:16], sb[:, 12:16] = pick[3], pick[3]  # the largest everywhere there
    same_as_mmasim(info, a, b, c, arch, inst, sa, sb)

