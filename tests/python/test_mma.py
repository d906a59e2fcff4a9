"""fpscope.gemm / fpscope.mma beyond the oracle (tests/python/test_mma_oracle.py proves the bits
of every instruction against MMA-Sim): how a GEMM is assembled (tiles, threads, K padding,
promotion), what it refuses, and what it returns."""
import numpy as np
import pytest

import fpscope

AMPERE = {"arch": "ampere", "inst": "m16n8k16.f32.f16.f16.f32"}


def fp16_values(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float16).astype(np.float32)


def e4m3_values(rng, shape):
    return fpscope.decode(fpscope.encode(rng.standard_normal(shape).astype(np.float32), "e4m3"), "e4m3")


def test_tiling_and_threads_do_not_change_a_result():
    # Each result depends on its row and column only: any split of the output gives the same bits,
    # also at shapes that are no multiple of the kernel's 8 x 64 output tile.
    rng = np.random.default_rng(1)
    a, b = fp16_values(rng, (29, 48), 8), fp16_values(rng, (48, 130), 8)
    c = rng.standard_normal((29, 130)).astype(np.float32)
    whole = fpscope.gemm(a, b, c, **AMPERE, threads=2)
    one = fpscope.gemm(a, b, c, **AMPERE, threads=1)
    assert np.array_equal(whole.view(np.uint32), one.view(np.uint32))
    for i in range(0, 29, 7):
        for j in range(0, 130, 33):
            part = fpscope.gemm(a[i:i + 7], b[:, j:j + 33], c[i:i + 7, j:j + 33], **AMPERE, threads=1)
            assert np.array_equal(part.view(np.uint32), whole[i:i + 7, j:j + 33].view(np.uint32))


def test_k_is_padded_with_zeros():
    rng = np.random.default_rng(2)
    a, b = fp16_values(rng, (16, 37)), fp16_values(rng, (37, 8))
    padded = fpscope.gemm(np.pad(a, ((0, 0), (0, 11))), np.pad(b, ((0, 11), (0, 0))), **AMPERE)
    assert np.array_equal(fpscope.gemm(a, b, **AMPERE).view(np.uint32), padded.view(np.uint32))


def test_promotion_adds_each_group_into_a_float32_total():
    rng = np.random.default_rng(3)
    hop = {"arch": "hopper", "inst": "m64n8k32.f32.e4m3.e4m3"}
    a, b = e4m3_values(rng, (64, 512)), e4m3_values(rng, (512, 8))
    c = rng.standard_normal((64, 8)).astype(np.float32)
    total = c.copy()
    for k0 in range(0, 512, 128):
        total = (total + fpscope.gemm(a[:, k0:k0 + 128], b[k0:k0 + 128], **hop)).astype(np.float32)
    got = fpscope.gemm(a, b, c, **hop, promote=128)
    assert np.array_equal(got.view(np.uint32), total.view(np.uint32))
    assert not np.array_equal(got, fpscope.gemm(a, b, c, **hop))  # promotion changes bits here


@pytest.mark.parametrize("arch,inst,fmt", [("cdna1", "f32_16x16x16f16", np.float16), ("cdna2", "f32_16x16x8bf16", None),
                                           ("cdna2", "f32_16x16x4f32", np.float32)])
def test_cdna1_cdna2_k_loop_threads_padding_promotion(arch, inst, fmt):
    # The CDNA1/CDNA2 models run in the scalar K loop (their step in mma_amd.cpp): threads and
    # output splits change no bit, K is padded with zeros, promotion adds each group in float32.
    rng = np.random.default_rng(5)
    vals = (lambda x: fpscope.decode(fpscope.encode(x, "bf16"), "bf16")) if fmt is None else \
        (lambda x: x.astype(fmt).astype(np.float32))
    a, b = vals(rng.standard_normal((21, 200)).astype(np.float32)), vals(rng.standard_normal((200, 19)).astype(np.float32))
    c = rng.standard_normal((21, 19)).astype(np.float32)
    kw = {"arch": arch, "inst": inst}
    whole = fpscope.gemm(a, b, c, **kw, threads=2)
    assert np.array_equal(whole.view(np.uint32), fpscope.gemm(a, b, c, **kw, threads=1).view(np.uint32))
    part = fpscope.gemm(a[5:9], b[:, 3:17], c[5:9, 3:17], **kw, threads=1)
    assert np.array_equal(part.view(np.uint32), whole[5:9, 3:17].view(np.uint32))
    padded = fpscope.gemm(np.pad(a, ((0, 0), (0, 8))), np.pad(b, ((0, 8), (0, 0))), c, **kw)
    assert np.array_equal(padded.view(np.uint32), whole.view(np.uint32))
    total = c.copy()
    for k0 in range(0, 200, 16):
        total = (total + fpscope.gemm(a[:, k0:k0 + 16], b[k0:k0 + 16], **kw)).astype(np.float32)
    got = fpscope.gemm(a, b, c, **kw, promote=16)
    assert np.array_equal(got.view(np.uint32), total.view(np.uint32))
    assert not np.array_equal(got, whole)  # promotion changes bits here


def test_deepseek_promotion_shrinks_hopper_fp8_error():
    # DeepSeek-V3 (arXiv 2412.19437, 3.3.2): FP8 WGMMA accumulation keeps ~14 bits; promoting to
    # FP32 every 128 elements fixes it. K = 4096, positive inputs (no cancellation to hide it).
    rng = np.random.default_rng(4)
    hop = {"arch": "hopper", "inst": "m64n8k32.f32.e4m3.e4m3"}
    a = fpscope.decode(fpscope.encode(np.abs(rng.standard_normal((64, 4096))).astype(np.float32), "e4m3"), "e4m3")
    b = fpscope.decode(fpscope.encode(np.abs(rng.standard_normal((4096, 8))).astype(np.float32), "e4m3"), "e4m3")
    exact = a.astype(np.float64) @ b.astype(np.float64)  # exact: products of e4m3 values, 4096 terms
    rel = lambda d: np.max(np.abs(d - exact) / np.abs(exact))  # noqa: E731
    plain, promoted = rel(fpscope.gemm(a, b, **hop)), rel(fpscope.gemm(a, b, **hop, promote=128))
    assert plain > 1e-3  # truncation to 13 fraction bits, 128 times over
    assert promoted < plain / 4


def test_f16_output_is_float16_with_the_canonical_nan():
    a = np.zeros((16, 16), np.float32)
    a[0, 0] = np.inf
    b = np.ones((16, 8), np.float32)
    b[0, 1] = 0.0
    d = fpscope.gemm(a, b, arch="ampere", inst="m16n8k16.f16.f16.f16.f16")
    assert d.dtype == np.float16
    assert d.view(np.uint16)[0, 0] == 0x7C00  # inf * 1
    assert d.view(np.uint16)[0, 1] == 0x7FFF  # inf * 0: NaN, as the hardware writes it
    assert d.view(np.uint16)[1, 0] == 0  # +0


def test_inexact_input_is_refused_naming_it():
    a = np.full((16, 16), 1.0, np.float32)
    a[3, 5] = 0.1
    with pytest.raises(ValueError, match=r"A\[3,5\] = 0\.1.* not exactly a fp16 value"):
        fpscope.gemm(a, np.ones((16, 8), np.float32), **AMPERE)
    with pytest.raises(ValueError, match="not float32 values"):
        fpscope.gemm(np.full((16, 16), 0.1), np.ones((16, 8)), **AMPERE)
    with pytest.raises(TypeError):
        fpscope.gemm(np.ones((16, 16), np.int32), np.ones((16, 8)), **AMPERE)


# The input check's shortcut (mma.cpp input_check: range and the bits below the format's quantum,
# without the format engine) at its edges, each value refused by one of its two tests only, or
# accepted: just beyond the largest value (a power of two: no bits to drop), just below the
# smallest subnormal, the extremes themselves; B and C (f16 output: C is fp16) checked the same way.
@pytest.mark.parametrize("arch,inst,where,value,ok", [
    ("ampere", "m16n8k16.f32.f16.f16.f32", "A", 131072.0, False),  # 2^17 > 65504
    ("ampere", "m16n8k16.f32.f16.f16.f32", "A", 65504.0, True),
    ("ampere", "m16n8k16.f32.f16.f16.f32", "B", 2.0 ** -25, False),  # below fp16's 2^-24
    ("ampere", "m16n8k16.f32.f16.f16.f32", "B", 2.0 ** -24, True),
    ("ampere", "m16n8k16.f32.f16.f16.f32", "B", 3 * 2.0 ** -24, True),
    ("ampere", "m16n8k16.f32.f16.f16.f32", "B", 3 * 2.0 ** -25, False),
    ("ampere", "m16n8k16.f16.f16.f16.f16", "C", 131072.0, False),
    ("ampere", "m16n8k16.f16.f16.f16.f16", "C", -65504.0, True),
    ("ampere", "m16n8k16.f32.bf16.bf16.f32", "A", 2.0 ** -133, True),  # bf16's smallest subnormal
    ("ampere", "m16n8k16.f32.bf16.bf16.f32", "A", 2.0 ** -134, False),
    ("hopper", "m64n8k32.f32.e4m3.e4m3", "A", 512.0, False),  # e4m3 (fn): 448 at most
    ("hopper", "m64n8k32.f32.e4m3.e4m3", "A", 448.0, True),
    ("hopper", "m64n8k32.f32.e4m3.e4m3", "B", 480.0, False),  # S.1111.111: e4m3's NaN code
    ("hopper", "m64n8k32.f32.e4m3.e4m3", "B", float("inf"), False),  # e4m3 has no inf
    ("hopper", "m64n8k32.f32.e4m3.e4m3", "B", float("nan"), True),
    ("hopper", "m64n8k32.f32.e5m2.e5m2", "B", float("-inf"), True),
    ("rtx-blackwell", "m16n8k32.kind::f8f6f4.f32.e2m1.e2m1.f32", "A", 8.0, False),  # e2m1: 6 at most
    ("rtx-blackwell", "m16n8k32.kind::f8f6f4.f32.e2m1.e2m1.f32", "A", -6.0, True),
])
def test_input_check_edges(arch, inst, where, value, ok):
    info = fpscope.mma_info(arch, inst)
    m, n, k = info["m"], info["n"], info["k"]
    a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
    c = np.zeros((m, n), np.float32)
    {"A": a, "B": b, "C": c}[where][1, 2] = value
    if ok:
        fpscope.gemm(a, b, c, arch=arch, inst=inst)
    else:
        with pytest.raises(ValueError, match=rf"{where}\[1,2\] = .* not exactly a"):
            fpscope.gemm(a, b, c, arch=arch, inst=inst)


def test_promote_must_be_a_multiple_of_k():
    with pytest.raises(ValueError, match="not a multiple"):
        fpscope.gemm(np.ones((16, 32), np.float32), np.ones((32, 8), np.float32), **AMPERE, promote=24)
    with pytest.raises(ValueError, match="non-negative"):
        fpscope.gemm(np.ones((16, 32), np.float32), np.ones((32, 8), np.float32), **AMPERE, promote=-1)


def test_mma_is_one_instruction_of_its_shape():
    with pytest.raises(ValueError, match="16 x 16"):
        fpscope.mma(np.ones((16, 32), np.float32), np.ones((32, 8), np.float32), **AMPERE)
    d = fpscope.mma(np.ones((16, 16), np.float32), np.ones((16, 8), np.float32), np.ones((16, 8), np.float32),
                    **AMPERE)
    assert d.shape == (16, 8) and np.all(d == 17)


def test_instruction_table():
    assert fpscope.mma_architectures() == ["volta", "turing", "ampere", "ada", "hopper", "blackwell", "rtx-blackwell",
                                          "cdna1", "cdna2", "cdna3"]
    # mmasim/amd/sim.py:10-27: CDNA1 f16 E_FDPA over 4 products, CDNA2 bf16 (not _1k) pairs of 2
    assert (fpscope.mma_info("cdna1", "f32_32x32x8f16")["arithmetic"], fpscope.mma_info("cdna1", "f32_32x32x8f16")["L"]) \
        == ("e_fdpa", 4)
    assert fpscope.mma_info("cdna2", "f32_16x16x8bf16")["L"] == 2 and fpscope.mma_info("cdna2", "f32_4x4x1f32")["arithmetic"] == "fma"
    assert "f32_32x32x8bf16_1k" not in fpscope.mma_instructions("cdna1")  # CDNA2's own
    with pytest.raises(ValueError, match="f64 instructions are not modelled"):
        fpscope.mma_info("cdna2", "f64_16x16x4f64")
    assert fpscope.mma_info("cdna3", "f32_32x32x8_f16")["rounding"] == "RNE-FP32"
    info = fpscope.mma_info("hopper", "m64n256k32.f32.e4m3.e4m3")
    # MMA-Sim nv_ptx/sim.py:130-143: FP8 wgmma keeps 13 fraction bits, 32 products a step
    assert (info["family"], info["F"], info["L"], info["rounding"], info["n"]) == ("wgmma", 13, 32, "RZ-E8M13", 256)
    assert fpscope.mma_info("volta", "m8n8k4.f16.f16.f16.f16")["rounding"] == "RNE-FP16"
    assert "m64nNk16.f32.bf16.bf16" in fpscope.mma_instructions("hopper")
    with pytest.raises(ValueError, match="unknown architecture 'sm90'"):
        fpscope.mma_instructions("sm90")
    with pytest.raises(ValueError, match="m64n264k16"):
        fpscope.mma_info("hopper", "m64n264k16.f32.f16.f16")  # N goes to 256


def test_block_scales_are_required_checked_and_refused_where_unused():
    mx = {"arch": "blackwell", "inst": "m128n8k64.kind::mxf4nvf4.block16.f32.e2m1.e2m1.ue4m3"}
    a, b = np.ones((128, 64), np.float32), np.ones((64, 8), np.float32)
    sa, sb = np.full((128, 4), 0x38, np.uint8), np.full((4, 8), 0x38, np.uint8)  # UE4M3 1.0
    assert np.all(fpscope.gemm(a, b, **mx, a_scale=sa, b_scale=sb) == 64)
    assert np.all(fpscope.gemm(a, b, **mx, a_scale=sa | 0x80, b_scale=sb) == 64)  # the sign bit is ignored
    with pytest.raises(ValueError, match="needs the scales"):
        fpscope.gemm(a, b, **mx)
    with pytest.raises(ValueError, match="UE4M3 NaN"):
        fpscope.gemm(a, b, **mx, a_scale=np.full((128, 4), 0x7F, np.uint8), b_scale=sb)
    with pytest.raises(ValueError, match="a_scale must be 128 x 4"):
        fpscope.gemm(a, b, **mx, a_scale=sa[:, :2], b_scale=sb)
    with pytest.raises(ValueError, match="takes no scales"):
        fpscope.gemm(np.ones((16, 16), np.float32), np.ones((16, 8), np.float32), **AMPERE, a_scale=sa, b_scale=sb)
    with pytest.raises(TypeError, match="uint8"):
        fpscope.gemm(a, b, **mx, a_scale=sa.astype(np.int32), b_scale=sb)


# ---- DeepSeek-V3's 1x128 / 128x128 scaling --------------------------------------------------------

HOPPER_FP8 = {"arch": "hopper", "inst": "m64n8k32.f32.e4m3.e4m3"}


def fma32(s, p, t):
    """float32(s * p + t) rounded once, nearest-even, from the exact value (fractions): the float32
    FMA, independently of fpscope (Python 3.11 has no math.fma)."""
    from fractions import Fraction

    exact = Fraction(float(s)) * Fraction(float(p)) + Fraction(float(t))
    c = np.float32(float(exact))  # within one float32 step of the answer: pick among c and its neighbours
    best = None
    for x in (np.nextafter(c, np.float32(-np.inf)), c, np.nextafter(c, np.float32(np.inf))):
        if not np.isfinite(x):
            continue
        d = abs(Fraction(float(x)) - exact)
        even = (int(np.array(x).view(np.uint32)) & 1) == 0
        if best is None or d < best[0] or (d == best[0] and even):
            best = (d, x)
    return best[1]


def fine_reference(a, b, c, sa, sb, **inst):
    """The 1x128 recipe written out: the unscaled instruction GEMM of each K-block of 128 (the
    instruction model, proven against MMA-Sim), its result times float32(sa * sb) added into a
    float32 total by an FMA (DeepGEMM's promotion), C first."""
    m, k = a.shape
    n = b.shape[1]
    total = c.astype(np.float32).copy()
    for kb in range(0, -(-k // 128)):
        p = fpscope.gemm(a[:, kb * 128:(kb + 1) * 128], b[kb * 128:(kb + 1) * 128], **inst)
        for i in range(m):
            for j in range(n):
                s = np.float32(sa[i, kb]) * np.float32(sb[kb, j // 128])  # a float32 multiply
                total[i, j] = fma32(s, p[i, j], total[i, j])
    return total


def test_1x128_scales_match_a_numpy_reference():
    # Shapes that cut every block: K = 300 (blocks of 128, 128, 44), N = 136 (B's tiles of 128, 8).
    rng = np.random.default_rng(7)
    a, b = e4m3_values(rng, (5, 300)), e4m3_values(rng, (300, 136))
    c = rng.standard_normal((5, 136)).astype(np.float32)
    sa = np.exp2(rng.uniform(-10, 10, (5, 3))).astype(np.float32) * rng.uniform(1, 2, (5, 3)).astype(np.float32)
    sb = np.exp2(rng.uniform(-10, 10, (3, 2))).astype(np.float32) * rng.uniform(1, 2, (3, 2)).astype(np.float32)
    sa[1, 1] = 0  # a zero scale: that block adds nothing
    want = fine_reference(a, b, c, sa, sb, **HOPPER_FP8)
    got = fpscope.gemm(a, b, c, **HOPPER_FP8, a_scale=sa, b_scale=sb)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    # promote=128 says the same; the scales matter (ones differ), also on Blackwell's instruction
    assert np.array_equal(fpscope.gemm(a, b, c, **HOPPER_FP8, a_scale=sa, b_scale=sb, promote=128).view(np.uint32),
                          got.view(np.uint32))
    ones = fpscope.gemm(a, b, c, **HOPPER_FP8, a_scale=np.ones_like(sa), b_scale=np.ones_like(sb))
    assert not np.array_equal(ones, got)
    bw = {"arch": "blackwell", "inst": "m128n8k32.kind::f8f6f4.f32.e4m3.e4m3"}
    want = fine_reference(a, b, c, sa, sb, **bw)
    assert np.array_equal(fpscope.gemm(a, b, c, **bw, a_scale=sa, b_scale=sb).view(np.uint32), want.view(np.uint32))


def test_1x128_scales_refusals():
    rng = np.random.default_rng(8)
    a, b = e4m3_values(rng, (4, 256)), e4m3_values(rng, (256, 8))
    sa, sb = np.ones((4, 2), np.float32), np.ones((2, 1), np.float32)
    with pytest.raises(ValueError, match="a_scale must be 4 x 2"):
        fpscope.gemm(a, b, **HOPPER_FP8, a_scale=sa[:, :1], b_scale=sb)
    with pytest.raises(ValueError, match="b_scale must be 2 x 1"):
        fpscope.gemm(a, b, **HOPPER_FP8, a_scale=sa, b_scale=np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="both"):
        fpscope.gemm(a, b, **HOPPER_FP8, a_scale=sa)
    with pytest.raises(ValueError, match="every 128"):
        fpscope.gemm(a, b, **HOPPER_FP8, a_scale=sa, b_scale=sb, promote=256)
    bad = sa.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=r"A scale \[3,1\] = inf is not finite"):
        fpscope.gemm(a, b, **HOPPER_FP8, a_scale=bad, b_scale=sb)
    for arch, inst in [("cdna3", "f32_32x32x8_f16"), ("cdna2", "f32_32x32x8f16"), ("cdna1", "f32_32x32x2f32")]:
        with pytest.raises(ValueError, match="AMD's own accumulation"):
            fpscope.gemm(a[:, :32].astype(np.float16), b[:32].astype(np.float16), arch=arch, inst=inst,
                         a_scale=np.ones((4, 1), np.float32), b_scale=np.ones((1, 1), np.float32))


def test_a_result_rounded_up_a_binade_is_the_next_steps_c_there():
    # Ampere's f16-output m16n8k16 (F = 24, L = 8, RNE-FP16): step 1 sums to 1.999755859375,
    # which rounds to 2.0 (past the midpoint below 2); step 2 aligns its terms to that C's
    # exponent 1, so the tiny product 1.5 * 2^-24 truncates to 0 (below 2^(1 - 24)) and the sum is
    # 2 + 2^-10, a tie, rounding to 2.0. Aligned one binade lower (C taken as 2048 * 2^-10), the
    # tiny product would keep 2^-24 and the sum round up to 2 + 2^-9. MMA-Sim 2.1.1 gives 2.0.
    a = np.zeros((16, 16), np.float16)
    b = np.ones((16, 8), np.float16)
    a[:, 0], a[:, 1], a[:, 8], a[:, 9] = 1.9990234375, 1.5 * 2**-11, 2**-10, 1.5 * 2**-12
    b[9, :] = 2**-12
    d = fpscope.mma(a, b, np.zeros((16, 8), np.float16), arch="ampere", inst="m16n8k16.f16.f16.f16.f16")
    assert d.dtype == np.float16 and np.all(d == 2.0)


def test_gemm_k_sweep_is_the_prefix_gemms():
    # Each depth: the errors of gemm() on the first K columns / rows, measured here against
    # NumPy's exact float64 product of e4m3 values (8-bit products, sums of at most 300: exact).
    rng = np.random.default_rng(12)
    a, b = np.abs(e4m3_values(rng, (6, 300))), np.abs(e4m3_values(rng, (300, 10)))
    pts = fpscope.gemm_k_sweep(a, b, **HOPPER_FP8, ks=[32, 100, 300], promote=128)
    assert [p["k"] for p in pts] == [32, 100, 300] and all(p["checked"] == 60 for p in pts)
    for p in pts:
        k = p["k"]
        d = fpscope.gemm(a[:, :k], b[:k], **HOPPER_FP8, promote=128).astype(np.float64)
        exact = a[:, :k].astype(np.float64) @ b[:k].astype(np.float64)
        assert p["max_abs_rel_error"] == np.max(np.abs(d - exact) / exact) > 0
    with pytest.raises(ValueError, match="not in 1..300"):
        fpscope.gemm_k_sweep(a, b, **HOPPER_FP8, ks=[301])
    with pytest.raises(ValueError, match="ks"):
        fpscope.gemm_k_sweep(a, b, **HOPPER_FP8, ks=[])


@pytest.mark.parametrize("arch,inst,fmt", [("cdna1", "f32_32x32x8f16", "fp16"), ("cdna1", "f32_32x32x4bf16", "bf16"),
                                           ("cdna2", "f32_32x32x8f16", "fp16"), ("cdna2", "f32_32x32x2f32", None),
                                           ("cdna3", "f32_32x32x2_f32", None)])
def test_amd_gemm_ignores_the_hosts_flush_to_zero(arch, inst, fmt):
    # AMD's kernels run on native arithmetic (mma_amd.cpp's AVX-512 kernels set MXCSR per thread):
    # a host with FTZ/DAZ set (torch.set_flush_denormal, here on the calling thread, threads=1)
    # gets the same bits, subnormal C and subnormal results included.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    n = 40  # not a multiple of the kernels' 4 x 32 tiles

    def operand(scale):
        x = (rng.standard_normal((n, n)) * scale).astype(np.float32)
        x[rng.random((n, n)) < 0.3] = 0
        return fpscope.decode(fpscope.encode(x, fmt), fmt) if fmt else x

    a, b = (operand(1.0), operand(1.0)) if fmt else (operand(2.0**-70), operand(2.0**-60))
    a[:5] = 0  # rows whose D is C's subnormals (CDNA1, CDNA3), or +0 (CDNA2's fp16)
    c = (rng.standard_normal((n, n)) * 2.0**-130).astype(np.float32)
    ref = fpscope.gemm(a, b, c, arch=arch, inst=inst, threads=1)
    if arch != "cdna2":  # CDNA2's f32 is the FMA chain too; its fp16 flushes every subnormal itself
        assert (np.abs(ref[ref != 0]) < np.finfo(np.float32).tiny).any()
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:
        got = fpscope.gemm(a, b, c, arch=arch, inst=inst, threads=1)
    finally:
        torch.set_flush_denormal(False)
    assert np.array_equal(ref.view(np.uint32), got.view(np.uint32))


def test_amd_vector_kernels_equal_the_scalar_steps():
    # mma_amd.cpp's AVX-512 kernels against its scalar K loop (FPSCOPE_MMA_SCALAR, read once per
    # process: a subprocess), where MMA-Sim's oracle does not go: promotion, K and shapes that are
    # not multiples of the tiles, specials spread through K, operands near under- and overflow.
    # (The oracle proves the scalar steps; on a CPU without AVX-512 both sides are scalar.)
    import os
    import subprocess
    import sys

    code = r'''
import sys, numpy as np, fpscope
rng = np.random.default_rng(7)
out = []
for arch, inst, fmt in [("cdna1", "f32_32x32x8f16", "fp16"), ("cdna1", "f32_32x32x4bf16", "bf16"),
                        ("cdna2", "f32_32x32x8f16", "fp16"), ("cdna2", "f32_32x32x4bf16", "bf16"),
                        ("cdna2", "f32_32x32x4bf16_1k", "bf16"), ("cdna3", "f32_32x32x2_f32", None)]:
    for promote in (0, 8):
        for scale in (1.0, 2.0**-62, 2.0**60):
            def op(shape):
                x = (rng.standard_normal(shape) * scale * np.exp2(rng.integers(-8, 8, shape))).astype(np.float32)
                u = rng.random(shape)
                x[u < 0.001], x[(u > 0.001) & (u < 0.002)], x[(u > 0.002) & (u < 0.003)] = np.inf, -np.inf, np.nan
                x[(u > 0.003) & (u < 0.1)], x[(u > 0.1) & (u < 0.13)] = 0.0, -0.0
                return fpscope.decode(fpscope.encode(x, fmt), fmt) if fmt else x
            a, b = op((37, 40)), op((40, 45))
            with np.errstate(over="ignore"):
                c = (rng.standard_normal((37, 45)) * scale * scale).astype(np.float32)
            c[:, 0] = -0.0
            out.append(fpscope.gemm(a, b, c, arch=arch, inst=inst, promote=promote, threads=1))
np.save(sys.argv[1], np.stack(out))
'''
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        res = []
        for scalar in (False, True):
            env = {k: v for k, v in os.environ.items() if k != "FPSCOPE_MMA_SCALAR"}
            if scalar:
                env["FPSCOPE_MMA_SCALAR"] = "1"
            path = os.path.join(tmp, f"{int(scalar)}.npy")
            subprocess.run([sys.executable, "-c", code, path], env=env, check=True)
            res.append(np.load(path))
    fast, scalar = res
    assert fast.shape == (36, 37, 45)
    finite = np.isfinite(fast)
    assert finite.mean() > 0.3 and (~finite).any() and (fast == 0).any()  # a mix, not all NaN
    assert np.array_equal(fast.view(np.uint32), scalar.view(np.uint32))
