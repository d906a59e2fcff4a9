"""fpscope.quantize (lib/src/block_quant.cpp) against references written here from the upstream
formulas, independently of the library: NumPy float32 arithmetic in the upstream order of
operations, ml_dtypes for every element and scale cast (E2M1, E2M3, E3M2, E4M3, E5M2, E8M0),
a value table for ties-away rounding, and gfloat (PyPI) for OCP MX block encoding (skipped,
visibly, where gfloat is not installed). Each recipe is checked code for code, scale for scale,
dequantized value for value and class count for class count, on data with the edge cases the
formulas single out: amax 0, inf, NaN, a subnormal amax, an amax at and just above the format's
maximum, all-zero blocks, and shapes not divisible by the block."""
import math

import ml_dtypes
import numpy as np
import pytest

import fpscope

F32 = np.float32
FLT_MAX = F32(np.finfo(np.float32).max)

# name -> (ml_dtypes type, max finite, emax, mantissa bits, has NaN)
ELEM = {
    "e4m3": (ml_dtypes.float8_e4m3fn, 448.0, 8, 3, True),
    "e5m2": (ml_dtypes.float8_e5m2, 57344.0, 15, 2, True),
    "e2m3": (ml_dtypes.float6_e2m3fn, 7.5, 2, 3, False),
    "e3m2": (ml_dtypes.float6_e3m2fn, 28.0, 4, 2, False),
    "e2m1": (ml_dtypes.float4_e2m1fn, 6.0, 2, 1, False),
}


def code_dtype(name):
    return np.uint8


def values_table(name):
    """Every finite code of the format and its value (for ties-away rounding and decoding)."""
    t = ELEM[name][0]
    bits = {"e4m3": 8, "e5m2": 8, "e2m3": 6, "e3m2": 6, "e2m1": 4}[name]
    codes = np.arange(2 ** bits, dtype=np.uint8)
    vals = codes.view(t).astype(np.float64)
    ok = np.isfinite(vals)
    return codes[ok], vals[ok]


def nan_code(name):
    # CUDA's satfinite casts: fp8 NaN is the canonical 0x7F; FP6/FP4 have no NaN, NaN -> +max.
    if ELEM[name][4]:
        return 0x7F
    return int(np.array(ELEM[name][1], np.float32).astype(ELEM[name][0]).view(np.uint8))


def cast_sat(y, name, rounding="rne"):
    """Satfinite cast of float32 y (CUDA cvt.rn.satfinite): clip to +-max, then round; codes."""
    t, mx, _, _, _ = ELEM[name]
    y = np.asarray(y, np.float32)
    c = np.clip(y, -mx, mx)
    if rounding == "rne":
        codes = c.astype(t).view(np.uint8).copy()
    else:  # ties away, from the value table
        tc, tv = values_table(name)
        pos = tv >= 0
        tc, tv = tc[pos & ~((tv == 0) & (tc != 0))], tv[pos & ~((tv == 0) & (tc != 0))]
        order = np.argsort(tv)
        tc, tv = tc[order], tv[order]
        a = np.abs(c.astype(np.float64))
        hi = np.clip(np.searchsorted(tv, a, side="left"), 0, len(tv) - 1)
        lo = np.clip(hi - 1, 0, len(tv) - 1)
        pick_hi = (tv[hi] - a) <= (a - tv[lo])
        pick_hi |= tv[hi] == a
        mag = np.where(pick_hi, tc[hi], tc[lo]).astype(np.uint8)
        sign = {8: 0x80, 6: 0x20, 4: 0x8}[{"e4m3": 8, "e5m2": 8, "e2m3": 6, "e3m2": 6, "e2m1": 4}[name]]
        codes = np.where(np.signbit(c), mag | sign, mag).astype(np.uint8)
    return np.where(np.isnan(y), np.uint8(nan_code(name)), codes).astype(np.uint8)


def decode(codes, name):
    return codes.astype(np.uint8).view(ELEM[name][0]).astype(np.float32)


def overflowed(y, name, rounding="rne"):
    """The IEEE overflow condition of a nearest cast of float32 y: beyond max + ulp(max)/2, or
    at it when the tie goes up (max's code odd under rne; always under ties-away)."""
    _, mx, emax, m, _ = ELEM[name]
    mid = mx + 2.0 ** (emax - m) / 2
    a = np.abs(np.asarray(y, np.float64))
    max_code_odd = int(np.array(mx, np.float32).astype(ELEM[name][0]).view(np.uint8)) & 1
    tie_up = rounding == "rna" or max_code_odd
    return (a > mid) | ((a == mid) & bool(tie_up))


def classes(x, y, codes, name, rounding="rne", nan_scale=None):
    """docs/hist.md's classes, from the input x, the scaled y and the code."""
    x = np.asarray(x, np.float32)
    d = np.abs(decode(codes, name).astype(np.float64))
    _, mx, emax, m, _ = ELEM[name]
    min_normal = 2.0 ** (1 - {"e4m3": 7, "e5m2": 15, "e2m3": 1, "e3m2": 3, "e2m1": 1}[name])
    out = {}
    fin = np.isfinite(x)
    out["nonfinite"] = int((~fin).sum())
    out["zero"] = int((x == 0).sum())
    nz = fin & (x != 0)
    ov = nz & (np.isnan(y) | overflowed(y, name, rounding))
    if nan_scale is not None:
        ov |= nz & nan_scale
    rest = nz & ~ov
    out["overflow"] = int(ov.sum())
    out["underflow"] = int((rest & (d == 0)).sum())
    out["subnormal"] = int((rest & (d > 0) & (d < min_normal)).sum())
    out["normal"] = int((rest & (d >= min_normal)).sum())
    return out


def blocks_of(shape, bshape):
    rows, cols = shape
    br, bc = bshape
    for i in range(0, rows, br):
        for j in range(0, cols, bc):
            yield (i // br, j // bc), (slice(i, min(i + br, rows)), slice(j, min(j + bc, cols)))


def grid_shape(shape, bshape):
    return (-(-shape[0] // bshape[0]), -(-shape[1] // bshape[1]))


# ---- references ---------------------------------------------------------------------------------


def e8m0_floor(amax, emax):
    """OCP MX v1.0 6.3 / torchao FLOOR: floor(log2 amax) - emax, clamped to [-127, 127]; NaN for a
    non-finite amax. Exact: math.frexp of the float64 value."""
    if not math.isfinite(amax):
        return None
    if amax == 0:
        return -127
    m, ex = math.frexp(amax)  # amax = m 2^ex, m in [0.5, 1)
    e = (ex - 1) - emax
    return max(e, -127) if e <= 127 else None


def e8m0_ceil(amax, emax):
    if not math.isfinite(amax):
        return None
    if amax == 0:
        return -127
    m, ex = math.frexp(amax)
    e = (ex - 1 if m == 0.5 else ex) - emax
    return max(e, -127) if e <= 127 else None


def e8m0_even(amax, emax, mbits):
    # torchao EVEN: the significand rounded half up to mbits bits, then floor.
    if not math.isfinite(amax):
        return None
    if amax == 0:
        return -127
    m, ex = math.frexp(amax)
    sig = math.floor(2 * m * 2 ** mbits + 0.5) / 2 ** mbits
    ex = ex - 1 + (1 if sig >= 2 else 0)
    if ex > 127:  # rounded past the float32 range: torchao's bits become inf -> NaN scale
        return None
    e = ex - emax
    return max(e, -127) if e <= 127 else None


def ceil_log2(d):
    m, ex = math.frexp(d)
    return ex - 1 if m == 0.5 else ex


def e8m0_rceil_torchao(amax, mx):
    # torchao _to_mx_rceil: descale = float32(amax * float32(1/max)); up to a power of two; NaN
    # for non-finite, and for a descale that rounds up past 2^127.
    if not math.isfinite(amax):
        return None
    d = float(F32(amax) * F32(1.0 / mx))
    if d == 0:
        return -127
    e = ceil_log2(d)
    if e > 127:
        return None
    return max(e, -127)


def e8m0_te(amax, mx):
    # TE float_to_e8m0(amax * max_norm_rcp): NaN -> 0xFF, inf and overflow saturate to 2^127.
    if math.isnan(amax):
        return None
    d = float(F32(amax) * F32(1.0 / mx))
    if math.isinf(d):
        return 127
    if d == 0:
        return -127
    return min(max(ceil_log2(d), -127), 127)


def ref_mx(x, elem, mode, block, axis, rounding="rne"):
    _, mx, emax, mbits, _ = ELEM[elem]
    bshape = (1, block) if axis == "row" else (block, 1)
    g = grid_shape(x.shape, bshape)
    codes = np.zeros(x.shape, np.uint8)
    y_all = np.zeros(x.shape, np.float32)
    dq = np.zeros(x.shape, np.float32)
    nan_scale = np.zeros(x.shape, bool)
    scodes = np.zeros(g, np.uint8)
    for (bi, bj), sl in blocks_of(x.shape, bshape):
        b = x[sl]
        a = np.abs(b.astype(np.float64))
        if mode == "te":
            amax = float(np.max(a[~np.isnan(a)], initial=0.0))
        else:
            amax = float("nan") if np.isnan(a).any() else float(np.max(a))
        e = {"floor": lambda: e8m0_floor(amax, emax), "ceil": lambda: e8m0_ceil(amax, emax),
             "even": lambda: e8m0_even(amax, emax, mbits), "rceil": lambda: e8m0_rceil_torchao(amax, mx),
             "te": lambda: e8m0_te(amax, mx)}[mode]()
        if e is None:
            scodes[bi, bj] = 0xFF
            y = np.full(b.shape, np.nan, np.float32)
            nan_scale[sl] = True
            f = F32(np.nan)
        else:
            scodes[bi, bj] = e + 127
            y = b * F32(2.0 ** -e)  # float32 product, as both upstreams
            f = F32(2.0 ** e)
        c = cast_sat(y, elem, rounding)
        codes[sl], y_all[sl] = c, y
        with np.errstate(over="ignore"):
            dq[sl] = decode(c, elem) * f
    return codes, scodes, dq, classes(x, y_all, codes, elem, rounding, nan_scale)


def ref_nvfp4_te(x, role, sr=False):
    bshape = (16, 16) if role == "weight" else (1, 16)
    a = np.abs(x.astype(np.float32))
    amax = F32(np.max(a[~np.isnan(a)], initial=0))  # fmaxf: NaN dropped
    with np.errstate(divide="ignore", over="ignore"):
        s_enc = F32(448.0 * 6.0) / amax if amax != 0 else F32(np.inf)
    s_enc = min(s_enc, FLT_MAX)
    if amax == 0 or s_enc == 0:
        s_enc = F32(1)
    s_dec = F32(1.0 / float(s_enc))
    g = grid_shape(x.shape, bshape)
    codes = np.zeros(x.shape, np.uint8)
    y_all = np.zeros(x.shape, np.float32)
    dq = np.zeros(x.shape, np.float32)
    scodes = np.zeros(g, np.uint8)
    for (bi, bj), sl in blocks_of(x.shape, bshape):
        b = x[sl]
        ab = np.abs(b)
        bamax = F32(np.max(ab[~np.isnan(ab)], initial=0))
        sdb = cast_sat(np.float32(bamax * (s_enc * F32(1.0 / 6.0))), "e4m3")
        scodes[bi, bj] = sdb
        sdb32 = decode(np.array(sdb), "e4m3")[()]
        with np.errstate(divide="ignore"):
            bsi = min(F32(1) / F32(sdb32 * s_dec), FLT_MAX)
        y = b * F32(bsi)
        c = cast_sat(y, "e2m1")
        codes[sl], y_all[sl] = c, y
        dq[sl] = decode(c, "e2m1") * F32(F32(sdb32 * amax) * F32(1.0 / (6.0 * 448.0)))
    return codes, scodes, dq, classes(x, y_all, codes, "e2m1"), float(s_enc)


def ref_nvfp4_torchao(x):
    bshape = (1, 16)
    amax = F32(np.nan) if np.isnan(x).any() else F32(np.max(np.abs(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        pts = F32(amax / F32(2688.0))
    g = grid_shape(x.shape, bshape)
    codes = np.zeros(x.shape, np.uint8)
    y_all = np.zeros(x.shape, np.float32)
    dq = np.zeros(x.shape, np.float32)
    scodes = np.zeros(g, np.uint8)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for (bi, bj), sl in blocks_of(x.shape, bshape):
            b = x[sl]
            bm = F32(np.nan) if np.isnan(b).any() else F32(np.max(np.abs(b)))
            sc = F32(F32(bm / F32(6)) / pts)
            sc = F32(np.clip(sc, F32(2.0 ** -6), F32(448)))  # NaN passes
            s8 = np.array(sc, np.float32).astype(ml_dtypes.float8_e4m3fn)
            scodes[bi, bj] = s8.view(np.uint8)
            s32 = F32(s8.astype(np.float32))
            y = b * F32(F32(F32(1) / pts) / s32)
            c = cast_sat(y, "e2m1")
            codes[sl], y_all[sl] = c, y
            dq[sl] = decode(c, "e2m1") * F32(s32 * pts)
    return codes, scodes, dq, classes(x, y_all, codes, "e2m1"), float(pts)


def te_scale(amax, fp8_max, pow2, eps=0.0):
    # TE compute_scale_from_amax (recipe_common.cuh), float32.
    a = F32(amax)
    if a < F32(eps):
        a = F32(eps)
    if math.isinf(a) or a == 0 or math.isnan(a):
        return F32(1)
    with np.errstate(over="ignore"):
        s = F32(F32(fp8_max) / a)
    if math.isinf(s):
        s = FLT_MAX
    if pow2:
        s = np.array([s], np.float32).view(np.uint32) & np.uint32(0xFF800000)
        s = s.view(np.float32)[0]
    return F32(s)


def ref_fp32_tiles(x, elem, bshape, pow2, kind):
    g = grid_shape(x.shape, bshape)
    codes = np.zeros(x.shape, np.uint8)
    y_all = np.zeros(x.shape, np.float32)
    dq = np.zeros(x.shape, np.float32)
    svals = np.zeros(g, np.float32)
    _, mx, _, _, _ = ELEM[elem]
    for (bi, bj), sl in blocks_of(x.shape, bshape):
        b = x[sl]
        fin = b[np.isfinite(b)]
        if kind in ("deepseek", "deepseek-ue8m0"):
            ab = np.abs(b)
            amax = max(F32(np.max(ab[~np.isnan(ab)], initial=0)), F32(1e-4))
            s = F32(amax / F32(448.0))
            if kind == "deepseek-ue8m0":  # exp2(ceil(log2(s))) with a float32 log2, as the kernel
                s = F32(np.exp2(np.ceil(np.log2(np.float32(s)))))
            y = b / s
            f = s
        else:
            amax = float(np.max(np.abs(fin), initial=0))
            s = te_scale(amax, mx, pow2)
            y = b * s
            f = F32(F32(1) / s)
        c = cast_sat(y, elem)
        codes[sl], y_all[sl] = c, y
        svals[bi, bj] = f
        dq[sl] = decode(c, elem) * f
    return codes, svals, dq, classes(x, y_all, codes, elem)


# ---- data with the edge cases -------------------------------------------------------------------


def edge_data(rows=37, cols=83, seed=1, nonfinite=True):
    """Gaussian data of a wide spread, a shape divisible by none of the blocks, and rows holding
    the formulas' edge cases; placed so that 1-D blocks along rows and along columns see them."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * np.exp2(rng.integers(-12, 12, (rows, 1)))).astype(np.float32)
    x[0, :] = 0                                     # all-zero blocks
    x[1, :] = np.float32(2.0 ** -140) * np.sign(rng.standard_normal(cols)).astype(np.float32)  # subnormal amax
    x[2, :40] = 448.0                               # amax at the e4m3 max
    x[2, 40:] = 6.0                                 # at the e2m1 max
    x[3, :] = rng.standard_normal(cols).astype(np.float32)
    x[3, ::32] = 7.9                                # significand above every element max's
    x[4, :] = np.float32(3.0e38)                    # amax near FLT_MAX: scales past 2^127
    x[5, :] = rng.standard_normal(cols).astype(np.float32) * np.float32(2.0 ** -120)  # tiny blocks
    x[6, 5] = 1e-30                                 # one tiny element in a zero row
    x[6, :5] = 0
    x[6, 6:] = 0
    if nonfinite:
        x[7, 3] = np.inf
        x[8, 50] = np.nan
        x[9, 10] = -np.inf
    return x


def assert_same(ours, ref, what):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    if ours.dtype.kind == "f":
        bad = ~((ours == ref) | (np.isnan(ours) & np.isnan(ref)))
        # float compare by bits, so +0 and -0 and NaN are told apart the same way
        bad |= (ours.view(np.uint32) != ref.view(np.uint32)) & ~(np.isnan(ours) & np.isnan(ref))
    else:
        bad = ours != ref
    n = int(bad.sum())
    assert n == 0, f"{what}: {n} mismatches, first at {np.argwhere(bad)[:5].tolist()}: ours {ours[bad][:5]} ref {ref[bad][:5]}"


MX_CASES = [(spec, elem, mode) for spec, elems in (("mxfp8", ("e4m3", "e5m2")), ("mxfp6", ("e2m3", "e3m2")),
                                                   ("mxfp4", ("e2m1",)))
            for elem in elems for mode in ("te", "floor", "ceil", "rceil", "even")]


@pytest.mark.parametrize("axis", ["row", "column"])
@pytest.mark.parametrize("spec,elem,mode", MX_CASES, ids=[f"{s}-{e}-{m}" for s, e, m in MX_CASES])
def test_mx_matches_the_formulas(spec, elem, mode, axis):
    x = edge_data()
    keys = f"scaling_mode={mode}" + ("" if spec == "mxfp4" else f",elem={elem}")
    q = fpscope.quantize(x, f"{spec}:{keys}", "input", axis)
    codes, scodes, dq, counts = ref_mx(x, elem, mode, 32, axis)
    assert q["element"] == elem and q["scale_format"] == "e8m0"
    assert_same(q["scales"], scodes, "scale codes")
    assert_same(q["codes"], codes, "element codes")
    assert_same(q["dequant"], dq, "dequantized")
    assert q["stats"]["counts"] == counts
    # The E8M0 scale values are what ml_dtypes decodes the codes to.
    assert_same(q["scale_values"], q["scales"].view(ml_dtypes.float8_e8m0fnu).astype(np.float32), "e8m0 values")


@pytest.mark.parametrize("elem", ["e4m3", "e2m1", "e3m2"])
def test_mx_ties_away_matches_the_value_table(elem):
    spec = {"e4m3": "mxfp8:elem=e4m3", "e2m1": "mxfp4:block_size=32", "e3m2": "mxfp6:elem=e3m2"}[elem]
    x = edge_data(nonfinite=False)
    # Exact ties of the element grid: k/2 steps in the first rows' blocks.
    x[10, :] = (np.arange(83, dtype=np.float32) % 13) * np.float32(0.25) + np.float32(0.125)
    q = fpscope.quantize(x, f"{spec},scaling_mode=floor,rounding=rna", "input")
    codes, scodes, dq, counts = ref_mx(x, elem, "floor", 32, "row", "rna")
    assert_same(q["codes"], codes, "element codes")
    assert q["stats"]["counts"] == counts
    ne = fpscope.quantize(x, f"{spec},scaling_mode=floor", "input")
    assert (ne["codes"] != q["codes"]).any()  # the data has ties that the two modes break apart


def test_te_and_ocp_scales_differ_where_the_notes_say():
    # ../shared/oracles.md: TE's scale is one binade above OCP's exactly where the block amax's
    # significand exceeds the element max's (1.75 for e4m3), where OCP clips the block maximum.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    te = fpscope.quantize(x, "mxfp8:scaling_mode=te", "input")
    ocp = fpscope.quantize(x, "mxfp8:scaling_mode=ocp", "input")
    amax = np.abs(x.reshape(64, 32, 32)).max(-1)
    sig = amax / np.exp2(np.floor(np.log2(amax)))
    diff = te["scales"].astype(int) - ocp["scales"].astype(int)
    assert set(np.unique(diff)) <= {0, 1}
    assert ((diff == 1) == (sig > 1.75)).all() and (diff == 1).sum() > 100
    # A block maximum overflows (docs/hist.md: the IEEE condition) when its significand reaches
    # beyond 1.8125 (464, the midpoint between 448 and 480; the tie rounds to 448, an even code).
    assert ocp["stats"]["clipped_blocks"] == int((sig > 1.8125).sum()) > 0 and te["stats"]["clipped_blocks"] == 0


@pytest.mark.parametrize("role", ["input", "weight", "grad"])
def test_nvfp4_te_matches_the_formulas(role):
    x = edge_data(nonfinite=False)
    q = fpscope.quantize(x, "nvfp4:sr=false", role, "row")
    codes, scodes, dq, counts, s_enc = ref_nvfp4_te(x, role)
    assert q["block_shape"] == ((16, 16) if role == "weight" else (1, 16))
    assert q["tensor_scale"] == s_enc
    assert_same(q["scales"], scodes, "e4m3 block scales")
    assert_same(q["codes"], codes, "e2m1 codes")
    assert_same(q["dequant"], dq, "dequantized")
    assert q["stats"]["counts"] == counts
    assert_same(q["scale_values"], q["scales"].view(ml_dtypes.float8_e4m3fn).astype(np.float32), "e4m3 values")


@pytest.mark.parametrize("case", ["zeros", "one_inf", "one_nan", "tiny_block", "max"])
def test_nvfp4_te_edges(case):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 48)).astype(np.float32)
    if case == "zeros":
        x[:] = 0
    elif case == "one_inf":
        x[1, 7] = np.inf
    elif case == "one_nan":
        x[2, 9] = np.nan
    elif case == "tiny_block":
        x[0, :16] *= np.float32(1e-6)  # its E4M3 block scale underflows: TE keeps a zero scale
        x[3, 0] = 1e4
    else:
        x[0, 0] = FLT_MAX
    q = fpscope.quantize(x, "nvfp4", "input")
    codes, scodes, dq, counts, s_enc = ref_nvfp4_te(x, "input")
    assert q["tensor_scale"] == s_enc
    assert_same(q["scales"], scodes, "e4m3 block scales")
    ok = ~np.isnan(x)
    assert_same(q["codes"][ok], codes[ok], "e2m1 codes")
    assert_same(q["dequant"][ok], dq[ok], "dequantized")
    if case == "tiny_block":
        assert q["scales"][0, 0] == 0 and (q["dequant"][0, :16] == 0).all()
        assert q["stats"]["any_vanish_blocks"] >= 1 and q["stats"]["most_vanish_blocks"] >= 1


@pytest.mark.parametrize("case", ["plain", "outlier", "edges", "zeros"])
def test_nvfp4_torchao_matches_the_formulas(case):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    if case == "outlier":
        x[0, 0] = 3e4
    elif case == "edges":
        x = edge_data(rows=20, cols=64, nonfinite=False)
    elif case == "zeros":
        x[:] = 0
    q = fpscope.quantize(x, "nvfp4:profile=torchao", "weight")
    codes, scodes, dq, counts, pts = ref_nvfp4_torchao(x)
    assert q["block_shape"] == (1, 16)  # torchao has no 2-D blocks
    assert_same(q["scales"], scodes, "e4m3 block scales")
    if case == "zeros":  # 0/0: every scale and element NaN; the codes are the cast's NaN
        assert np.isnan(q["dequant"]).all() and q["stats"]["nan_scale_blocks"] == q["stats"]["blocks"]
        return
    assert_same(q["codes"], codes, "e2m1 codes")
    assert_same(q["dequant"], dq, "dequantized")
    assert q["stats"]["counts"] == counts


def test_nvfp4_te_and_torchao_differ_where_the_notes_say():
    # ../shared/oracles.md: torchao never lets a block scale below 2^-6; TE keeps subnormal and
    # zero E4M3 scales.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    x[0, 0] = 1e5
    te = fpscope.quantize(x, "nvfp4", "input")
    ao = fpscope.quantize(x, "nvfp4:profile=torchao", "input")
    assert ao["scale_values"].min() >= 2.0 ** -6
    assert te["scale_values"].min() < 2.0 ** -6
    assert (te["scales"] != ao["scales"]).mean() > 0.5


def test_nvfp4_stochastic_rounding_of_gradients():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    a = fpscope.quantize(x, "nvfp4:seed=1", "grad")
    b = fpscope.quantize(x, "nvfp4:seed=1", "grad")
    c = fpscope.quantize(x, "nvfp4:seed=2", "grad")
    rne = fpscope.quantize(x, "nvfp4", "input")
    assert "stochastic" in a["recipe"]
    assert (a["codes"] == b["codes"]).all() and (a["codes"] != c["codes"]).any()
    assert (a["scales"] == rne["scales"]).all()  # only the elements are rounded stochastically
    # Each element lands on one of the two grid neighbours of its scaled value.
    y = np.abs(x * (rne["dequant"] / np.where(rne["dequant"] == 0, 1, x)))
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6])
    scale = np.repeat(a["dequant_scale"], 16, axis=1)
    sv = np.abs(x) / scale
    lo = grid[np.clip(np.searchsorted(grid, sv, side="right") - 1, 0, 7)]
    hi = grid[np.clip(np.searchsorted(grid, sv, side="left"), 0, 7)]
    got = np.abs(decode(a["codes"], "e2m1"))
    assert ((got == lo) | (got == hi) | (sv > 6)).all()
    del y
    # Unbiased: the mean error over many elements is far below a nearest cast's worst case.
    assert abs(float((a["dequant"] - x).mean())) < 0.02


@pytest.mark.parametrize("role,axis", [("input", "row"), ("weight", "row"), ("grad", "column")])
def test_fp8_block_and_deepseek_match_the_formulas(role, axis):
    x = edge_data(rows=130, cols=260, nonfinite=False)
    for spec, kind, pow2 in (("fp8-block", "te", True), ("fp8-block:pow2=false", "te", False), ("deepseek", "deepseek", False)):
        q = fpscope.quantize(x, spec, role, axis)
        b = (128, 128) if role == "weight" else ((1, 128) if axis == "row" else (128, 1))
        codes, svals, dq, counts = ref_fp32_tiles(x, "e4m3", b, pow2, kind)
        assert q["block_shape"] == b, spec
        assert_same(q["dequant_scale"], svals, spec + " scales")
        assert_same(q["codes"], codes, spec + " codes")
        assert_same(q["dequant"], dq, spec + " dequantized")
        assert q["stats"]["counts"] == counts, spec


@pytest.mark.parametrize("role,elem", [("input", "e4m3"), ("grad", "e5m2")])
def test_te_current_on_an_operand(role, elem):
    x = edge_data(nonfinite=False)
    q = fpscope.quantize(x, "te-current", role)
    codes, svals, dq, counts = ref_fp32_tiles(x, elem, x.shape, False, "te")
    assert q["element"] == elem and q["scales"].shape == (1, 1)
    assert_same(q["codes"], codes, "codes")
    assert_same(q["dequant"], dq, "dequantized")
    assert q["stats"]["counts"] == counts


def test_block_statistics_count_what_they_say():
    x = np.ones((4, 64), np.float32)
    x[0, :32] = 0                         # one all-zero block
    x[1, :32] = 1e-12                     # vanishes under MXFP4 next to the 1s? no: own block
    x[1, 0] = 1.0                         # block max 1: the 1e-12s vanish (most of the block)
    x[2, 32] = 7.9                        # OCP floor clips this block's max (7.9 > 6 * 2^0... )
    q = fpscope.quantize(x, "mxfp4:scaling_mode=floor", "input")
    st = q["stats"]
    assert st["blocks"] == 8 and st["zero_blocks"] == 1
    assert st["any_vanish_blocks"] == 1 and st["most_vanish_blocks"] == 1
    assert st["clipped_blocks"] == 1
    assert sum(st["scale_binades"].values()) == 8
    assert st["min_scale"] == 2.0 ** -127 and st["max_scale"] == 2.0 ** 0
    assert sum(st["counts"].values()) == x.size
    with pytest.raises(ValueError, match="does not quantize"):
        fpscope.quantize(x, "torch", "input")
    with pytest.raises(ValueError, match="unknown role"):
        fpscope.quantize(x, "mxfp8", "bias")
    with pytest.raises(ValueError, match="unknown axis"):
        fpscope.quantize(x, "mxfp8", "input", "diagonal")
    with pytest.raises(ValueError, match="wgrad has no weight"):
        fpscope.quantize(x, "mxfp8", "weight", gemm="wgrad")
    assert fpscope.quantize(x, "mxfp8", "grad", gemm="wgrad")["block_shape"] == (32, 1)


def test_fake_quantization_from_torch():
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 512).reshape(8, 64)
    q = fpscope.quantize(t.numpy(), "nvfp4", "input")
    assert (fpscope.quantize(t, "nvfp4", "input")["codes"] == q["codes"]).all()  # a tensor directly
    back = torch.from_numpy(q["dequant"])
    assert back.shape == t.shape and back.dtype == torch.float32
    assert float((back - t).abs().max()) < 0.6


# ---- gfloat: OCP MX block encoding ----------------------------------------------------------------

GF = {"e4m3": "mxfp8_e4m3", "e5m2": "mxfp8_e5m2", "e2m3": "mxfp6_e2m3", "e3m2": "mxfp6_e3m2", "e2m1": "mxfp4_e2m1"}


@pytest.mark.parametrize("elem", list(GF))
@pytest.mark.parametrize("rnd", ["rne", "rna"])
def test_ocp_mx_blocks_match_gfloat(elem, rnd):
    gfloat = pytest.importorskip("gfloat", reason="gfloat (PyPI) not installed: tools/setup.sh installs it")
    from gfloat import formats
    fi = getattr(formats, "format_info_" + GF[elem])
    mode = gfloat.RoundMode.TiesToEven if rnd == "rne" else gfloat.RoundMode.TiesToAway
    x = edge_data(rows=24, cols=96, nonfinite=False)
    x[4, :] = 1.5  # gfloat refuses scales beyond E8M0 (x[4] is 3e38); keep blocks it encodes
    spec = {"e4m3": "mxfp8:elem=e4m3", "e5m2": "mxfp8:elem=e5m2", "e2m3": "mxfp6:elem=e2m3", "e3m2": "mxfp6:elem=e3m2",
            "e2m1": "mxfp4:block_size=32"}[elem]
    q = fpscope.quantize(x, f"{spec},scaling_mode=ocp,rounding={rnd}", "input")
    mismatches = 0
    for i in range(x.shape[0]):
        for j in range(0, x.shape[1], 32):
            vals = x[i, j:j + 32].astype(np.float64)
            scale = gfloat.compute_scale_amax(fi.etype.emax, vals)
            enc = list(gfloat.encode_block(fi, scale, vals / scale, mode))
            mismatches += enc[0] != int(q["scales"][i, j // 32])
            mismatches += int((np.array(enc[1:]) != q["codes"][i, j:j + 32]).sum())
    assert mismatches == 0


def test_nvfp4_te_keeps_the_order_of_operations():
    # S_dec_b = e4m3(amax_b * (S_enc * (1/6))) in that order (core_nvfp4.cuh): find block amaxes
    # where (amax_b * S_enc) * (1/6) rounds to another E4M3 scale, so that a reordering fails.
    tensor_amax = F32(1000.0)
    s_enc = F32(448.0 * 6.0) / tensor_amax
    # Candidates: the float32 amaxes within 64 ulps of each E4M3 midpoint's preimage.
    mids = np.array([(1 + (2 * j + 1) / 16) * 2.0 ** k for k in range(-4, 8) for j in range(8)], np.float64)
    pre = (mids / (float(s_enc) / 6.0)).astype(np.float32).view(np.int32)
    cand = (pre[:, None] + np.arange(-64, 65, dtype=np.int32)[None, :]).ravel().view(np.float32)
    cand = cand[(cand > 0) & (cand < tensor_amax)]
    te = (cand * F32(s_enc * F32(1.0 / 6.0))).astype(np.float32)
    other = ((cand * s_enc).astype(np.float32) * F32(1.0 / 6.0)).astype(np.float32)
    differ = cand[cast_sat(te, "e4m3") != cast_sat(other, "e4m3")]
    assert len(differ) >= 4
    x = np.zeros((1, 16 * 5), np.float32)
    x[0, 0] = tensor_amax
    for k, a in enumerate(differ[:4]):
        x[0, 16 * (k + 1)] = a
    q = fpscope.quantize(x, "nvfp4", "input")
    codes, scodes, dq, counts, _ = ref_nvfp4_te(x, "input")
    assert_same(q["scales"], scodes, "e4m3 block scales")
    assert_same(q["dequant"], dq, "dequantized")


# TE's matrices, as transformer_engine/pytorch/tensor/nvfp4_tensor.py writes them out.
TE_SIGNS = [1, 1, 1, -1, 1, -1, -1, -1, -1, -1, -1, 1, -1, 1, -1, -1]
TE_H16 = [
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1],
    [1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1], [1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1],
    [1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1], [1, -1, 1, -1, -1, 1, -1, 1, 1, -1, 1, -1, -1, 1, -1, 1],
    [1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, 1, 1], [1, -1, -1, 1, -1, 1, 1, -1, 1, -1, -1, 1, -1, 1, 1, -1],
    [1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1, -1, 1, -1, 1],
    [1, 1, -1, -1, 1, 1, -1, -1, -1, -1, 1, 1, -1, -1, 1, 1], [1, -1, -1, 1, 1, -1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1],
    [1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1], [1, -1, 1, -1, -1, 1, -1, 1, -1, 1, -1, 1, 1, -1, 1, -1],
    [1, 1, -1, -1, -1, -1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1], [1, -1, -1, 1, -1, 1, 1, -1, -1, 1, 1, -1, 1, -1, -1, 1],
]


def rht_ref(x, inverse=False):
    """y = x M per 16 rows of each column, M = diag(signs) H / 4 (get_rht_matrix), each sum exact
    (math.fsum) and rounded to float32; inverse: x = y M^T."""
    m = np.diag(TE_SIGNS).astype(np.float64) @ np.array(TE_H16, np.float64) / 4
    if inverse:
        m = m.T
    out = np.zeros(x.shape, np.float32)
    for g in range(0, x.shape[0], 16):
        for j in range(x.shape[1]):
            col = x[g:g + 16, j].astype(np.float64)
            for k in range(16):
                out[g + k, j] = np.float32(math.fsum(col * m[:, k]))
    return out


@pytest.mark.parametrize("role", ["input", "grad"])
def test_nvfp4_wgrad_random_hadamard_transform(role):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((48, 20)).astype(np.float32)
    x[5, 3] = 40.0  # an outlier the transform spreads over its 16-element group
    q = fpscope.quantize(x, "nvfp4:sr=false", role, gemm="wgrad")
    assert "Hadamard" in q["recipe"] and q["block_shape"] == (16, 1)
    y = rht_ref(x)
    codes, scodes, dq, counts, s_enc = ref_nvfp4_te(np.ascontiguousarray(y.T), "input")
    assert q["tensor_scale"] == s_enc  # the per-tensor scale is of the transformed operand (post-RHT amax)
    assert_same(q["codes"], codes.T, "e2m1 codes of the transformed operand")
    assert_same(q["scales"], scodes.T, "e4m3 block scales")
    assert q["stats"]["counts"] == counts
    assert_same(q["dequant"], rht_ref(np.ascontiguousarray(dq.T), inverse=True), "dequantized, mapped back")
    plain = fpscope.quantize(x, "nvfp4:sr=false,rht=false", role, gemm="wgrad")
    assert "Hadamard" not in plain["recipe"] and (plain["codes"] != q["codes"]).mean() > 0.5
    # Only the wgrad orientation is transformed (TE: columnwise usage of input and grad).
    assert "Hadamard" in fpscope.quantize(x, "nvfp4", role, gemm="fprop" if role == "input" else "dgrad")["recipe"]
    assert_same(fpscope.quantize(x, "nvfp4:sr=false", "input", "row")["codes"],
                fpscope.quantize(x, "nvfp4:sr=false,rht=false", "input", "row")["codes"], "rowwise codes")
    with pytest.raises(ValueError, match="multiple of 16"):
        fpscope.quantize(x[:40], "nvfp4", role, gemm="wgrad")
    assert fpscope.quantize(x[:40], "nvfp4:rht=false", role, gemm="wgrad")["codes"].shape == (40, 20)


def test_deepseek_ue8m0_scales():
    x = edge_data(rows=130, cols=260, nonfinite=False)
    # A tile whose s = amax / 448 is one ulp above 2^-10: the float32 log2 rounds to -10 exactly,
    # so the kernel keeps 2^-10 (an exact ceil would give 2^-9).
    x[20, :128] = 0.1
    x[20, 0] = np.float32(0.4375) + np.float32(2.0 ** -25)
    q = fpscope.quantize(x, "deepseek:ue8m0", "input", "row")
    codes, svals, dq, counts = ref_fp32_tiles(x, "e4m3", (1, 128), False, "deepseek-ue8m0")
    assert q["dequant_scale"][20, 0] == 2.0 ** -10
    s = q["dequant_scale"][np.isfinite(q["dequant_scale"])]
    assert (np.frexp(s)[0] == 0.5).all()  # powers of two
    assert_same(q["dequant_scale"], svals, "ue8m0 scales")
    assert_same(q["codes"], codes, "codes")
    assert_same(q["dequant"], dq, "dequantized")
    assert q["stats"]["counts"] == counts
