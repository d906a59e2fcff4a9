"""fpscope.block_stats / answer_block_stats (lib/src/block_stats.cpp) against the values path,
fpscope.quantize (lib/src/block_quant.cpp, itself checked against NumPy/ml_dtypes references in
test_block_quant.py): every power-of-two recipe x scale mode x element format x rounding x axis
answers exactly (every field but the error statistics and most_vanish_blocks, which is a bound),
and every other recipe's [low, high] holds the values path's answer. On Gaussian data across many
binades and on the edge cases: zeros, inf, NaN, float32 subnormals, amax at and around each
format's maximum, all-zero blocks, shapes divisible by no block."""
import numpy as np
import pytest

import fpscope

F32 = np.float32
# What answer_block_stats answers: block_stats fields (quantize()["stats"]) less the error ones.
FIELDS = ["blocks", "clipped_blocks", "any_vanish_blocks", "most_vanish_blocks", "zero_blocks", "nan_scale_blocks",
          "min_scale", "max_scale", "nonfinite_dequant"]
BOUND_ONLY = {"most_vanish_blocks"}  # needs each block's median: a bound by design


def wide_data(rows=70, cols=150, seed=3, lo=-30, hi=30):
    """Gaussian rows scaled by 2^lo..2^hi, with every element's significand spread (no clustering
    on short significands): many binades per block along rows and along columns."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, cols)) * np.exp2(rng.integers(lo, hi, (rows, 1)))
    x *= np.exp2(rng.integers(-6, 6, (rows, cols)))
    return x.astype(F32)


def edge_data(rows=45, cols=83, seed=1):
    """The edge cases, placed so that blocks along rows, along columns and 2-D tiles see them."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * np.exp2(rng.integers(-12, 12, (rows, 1)))).astype(F32)
    x[0, :] = 0                                                     # all-zero blocks
    x[1, :] = F32(2.0 ** -140) * np.sign(rng.standard_normal(cols)).astype(F32)  # subnormal amax
    x[2, :40] = 448.0                                               # amax at the e4m3 max
    x[2, 40:] = 6.0                                                 # at the e2m1 max
    x[3, :] = rng.standard_normal(cols).astype(F32)
    x[3, ::32] = 7.9                                                # significand above every max's
    x[4, :] = F32(3.0e38)                                           # amax near FLT_MAX
    x[5, :] = rng.standard_normal(cols).astype(F32) * F32(2.0 ** -120)  # tiny blocks
    x[6, :] = 0
    x[6, 5] = 1e-30                                                 # one tiny element in a zero row
    x[7, 3] = np.inf
    x[8, 50] = np.nan
    x[9, 10] = -np.inf
    x[10, :] = rng.integers(-32, 32, cols).astype(F32) / F32(8)   # exact grid points and ties
    x[11, :] = np.float32(57344.0) * rng.choice([0.5, 1.0, 1.0625, 1.07], cols).astype(F32)  # around e5m2's max
    x[12, :] = F32(7.5) * rng.choice([1.0, 1.0333, 1.0667, 0.9667], cols).astype(F32)  # around e2m3's max
    x[13, :] = F32(28.0) * rng.choice([1.0, 1.0714, 1.1, 0.5], cols).astype(F32)      # around e3m2's max
    x[14, :] = np.nextafter(F32(448.0) * np.exp2(rng.integers(-10, 10, cols)).astype(F32), F32(np.inf))  # just above
    x[15, :] = np.nextafter(F32(1.75) * np.exp2(rng.integers(-10, 10, cols)).astype(F32), F32(0))      # just below
    x[16, :] = np.exp2(rng.integers(-149, -126, cols)).astype(F32)    # float32 subnormals
    x[16, ::7] = np.float32(1e-38)
    x[17:24, 7] = np.nan                                            # NaN down a column
    x[24, :] = np.where(rng.random(cols) < 0.5, 0, x[24, :]).astype(F32)  # half zeros
    x[25, :] = F32(2.0 ** 127) * rng.choice([1.0, 1.5, 1.99], cols).astype(F32)  # the top binade
    return x


DATA = {"wide": wide_data(), "edge": edge_data(), "narrow": wide_data(37, 300, seed=5, lo=-3, hi=3)}
STATS = {k: fpscope.block_stats(v) for k, v in DATA.items()}

MX = [f"{spec}:scaling_mode={mode},elem={elem},rounding={rnd}" for spec, elems in
      (("mxfp8", ("e4m3", "e5m2")), ("mxfp6", ("e2m3", "e3m2"))) for elem in elems
      for mode in ("te", "floor", "ocp", "ceil", "rceil", "even") for rnd in ("rne", "rna")]
MX += [f"mxfp4:scaling_mode={mode},rounding={rnd}" for mode in ("te", "floor", "ceil", "rceil", "even") for rnd in ("rne", "rna")]
POW2 = MX + ["fp8-block", "fp8-block:fp8_format=hybrid", "fp8-block:w_block_scaling_dim=1", "deepseek:ue8m0=true",
             "te-current:pow2=true"]
OPERANDS = [("input", "row"), ("input", "column"), ("weight", "row"), ("weight", "column"), ("grad", "row"),
            ("grad", "column")]


def check(stats, x, spec, role, axis, exact):
    a = fpscope.answer_block_stats(stats, spec, role, axis)
    q = fpscope.quantize(x, spec, role, axis)
    s = q["stats"]
    assert a["block_shape"] == q["block_shape"]
    assert a["element"] == q["element"]
    lo, hi = a["low"], a["high"]
    for c, n in s["counts"].items():
        assert lo["counts"][c] <= n <= hi["counts"][c], (spec, role, axis, c, lo["counts"][c], n, hi["counts"][c])
    for k in FIELDS:
        if k in ("min_scale", "max_scale") and lo["blocks"] and not s["scale_binades"]:
            continue
        assert lo[k] <= s[k] <= hi[k], (spec, role, axis, k, lo[k], s[k], hi[k])
    if exact:
        assert lo["counts"] == s["counts"], (spec, role, axis)
        assert lo["scale_binades"] == s["scale_binades"], (spec, role, axis)
        for k in FIELDS:
            if k not in BOUND_ONLY:
                assert lo[k] == s[k] == hi[k], (spec, role, axis, k, lo[k], s[k], hi[k])
        assert all(v for k, v in a["exact_fields"].items() if k not in BOUND_ONLY), a["exact_fields"]
    return a, s


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize("spec", POW2)
def test_power_of_two_recipes_answer_exactly(spec, data):
    x, st = DATA[data], STATS[data]
    if spec.startswith("fp8-block") and np.isinf(x).any():
        # TE gives a tile holding an inf the scale 1 (te_current_scale's rule), so its elements'
        # classes follow their own exponents, which the far-below bin does not keep: there the
        # answer is a bound (test_fp8_block_inf_tiles_are_bounds); exact on the same data without.
        x = np.where(np.isinf(x), F32(np.nan), x)
        st = fpscope.block_stats(x)
    checked = 0
    for role, axis in OPERANDS:
        a, s = check(st, x, spec, role, axis, exact=True)
        checked += s["counts"]["underflow"] + s["counts"]["normal"]
    assert checked > 0


def test_fp8_block_inf_tiles_are_bounds():
    x = DATA["edge"]
    a, s = check(STATS["edge"], x, "fp8-block", "input", "column", exact=False)
    assert not a["exact"]


def test_the_data_reaches_every_class():
    # The exactness tests mean something only if the data puts elements in every class.
    seen = set()
    for spec in ("mxfp8", "mxfp4", "mxfp6:elem=e3m2", "fp8-block"):
        for data, x in DATA.items():
            s = fpscope.quantize(x, spec, "input", "row")["stats"]
            seen |= {c for c, n in s["counts"].items() if n}
            if s["clipped_blocks"]:
                seen.add("clipped")
            if s["nan_scale_blocks"]:
                seen.add("nan_scale")
    assert seen >= {"zero", "underflow", "subnormal", "normal", "overflow", "nonfinite", "clipped", "nan_scale"}, seen


NOT_POW2 = ["nvfp4:rht=false", "nvfp4:rht=false,sr=false", "nvfp4:profile=torchao", "nvfp4:rht=false,2d=false",
            "deepseek", "deepseek:ue8m0=true,amax_floor=0.3", "fp8-block:pow2=false", "te-current",
            "fp8-block:amax_epsilon=3"]


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize("spec", NOT_POW2)
def test_other_recipes_are_bounded(spec, data):
    x = DATA[data]
    st = fpscope.block_stats(x, [(1, 16), (16, 1), (16, 16), (1, 128), (128, 1), (128, 128)])
    for role, axis in OPERANDS:
        check(st, x, spec, role, axis, exact=False)


def test_non_power_of_two_answers_say_they_are_bounds():
    a = fpscope.answer_block_stats(STATS["wide"], "deepseek", "input", "row")
    assert not a["exact"]
    assert not a["exact_fields"]["counts.normal"]
    assert a["low"]["counts"]["normal"] < a["high"]["counts"]["normal"]


def test_amax_floors_add_no_threshold():
    # An amax floor (deepseek's amax_floor, fp8-block's amax_epsilon) holds the scale constant
    # below it and meets the unfloored scale at it: it adds no scale change, so answers under any
    # floor stay exact with the recorded thresholds (the corner check would say otherwise).
    x = (np.random.default_rng(4).standard_normal((64, 256)) * 0.1).astype(F32)
    amax = np.abs(x).reshape(64, 2, 128).max(axis=2)
    assert ((amax >= 0.25) & (amax < 0.45)).any()
    st = fpscope.block_stats(x, [(1, 128)])
    for spec in ("deepseek:ue8m0=true,amax_floor=0.45", "deepseek:ue8m0=true,amax_floor=0.3",
                 "fp8-block:amax_epsilon=0.45"):
        a, s = check(st, x, spec, "input", "row", exact=True)
        assert a["exact"]


def test_stats_are_compact_and_threaded_alike():
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((512, 1024)) * np.exp2(rng.integers(-8, 8, (512, 1)))).astype(F32)
    one = fpscope.block_stats(x, threads=1)
    many = fpscope.block_stats(x, threads=3)
    for g1, g2 in zip(one["geometries"], many["geometries"]):
        assert g1["block"] == g2["block"]
        for k in ("elements", "blocks", "minima"):
            assert np.array_equal(g1[k][0], g2[k][0]) and np.array_equal(g1[k][1], g2[k][1])
        assert int(g1["elements"][1].sum()) == x.size
    # Tens of thousands of cells over five geometries where the values hold half a million.
    assert sum(len(g["elements"][0]) for g in one["geometries"]) < x.size / 10


def test_missing_geometry_and_transform_refused():
    st = fpscope.block_stats(DATA["edge"], [(1, 32)])
    with pytest.raises(ValueError, match="no 1x128 blocks"):
        fpscope.answer_block_stats(st, "fp8-block", "input", "row")
    st16 = fpscope.block_stats(DATA["edge"], [(16, 1)])
    with pytest.raises(ValueError, match="Hadamard"):
        fpscope.answer_block_stats(st16, "nvfp4", "grad", "column")
    with pytest.raises(ValueError, match="does not quantize"):
        fpscope.answer_block_stats(st, "static:1024", "input", "row")


def test_malformed_statistics_refused():
    base = STATS["edge"]

    def with_geometry(**kw):
        g = dict(base["geometries"][0], **kw)
        return dict(base, geometries=[g])

    k, n = base["geometries"][0]["elements"]
    with pytest.raises(ValueError, match="strictly increasing"):
        fpscope.answer_block_stats(with_geometry(elements=(k[::-1].copy(), n[::-1].copy())), "mxfp8")
    with pytest.raises(ValueError, match="differ in length"):
        fpscope.answer_block_stats(with_geometry(elements=(k, n[:-1])), "mxfp8")
    with pytest.raises(ValueError, match="thresholds"):
        fpscope.answer_block_stats(dict(base, thresholds=np.array([5, 3], np.uint32)), "mxfp8")
    bad = k.copy()
    bad[-1] = 0xFFFFFFFF  # an amax exponent code past the float32 range
    with pytest.raises(ValueError, match="block statistics"):
        fpscope.answer_block_stats(with_geometry(elements=(bad, n)), "mxfp8")
    with pytest.raises(ValueError, match="amax is not a finite float32"):
        fpscope.answer_block_stats(dict(base, finite_amax=float("nan")), "mxfp8")
    with pytest.raises(ValueError, match="sum to"):
        fpscope.answer_block_stats(with_geometry(elements=(k, n * 2)), "mxfp8")
    with pytest.raises(ValueError, match="zero edge"):
        fpscope.answer_block_stats(with_geometry(block=(0, 32)), "mxfp8")


# ---- in a trace (docs/trace.md "Block statistics") -------------------------------------------------

def test_recorder_stores_block_stats_and_the_trace_answers_from_them(tmp_path):
    from fpscope.record import Recorder

    rng = np.random.default_rng(11)
    grads = {"fc.weight": (rng.standard_normal((96, 160)) * 1e-3).astype(F32),
             "fc.bias": (rng.standard_normal(160) * 1e-5).astype(F32)}
    grads["fc.weight"][3, :40] = 0
    grads["fc.weight"][5, 7] = np.inf
    path = tmp_path / "run.h5"
    with Recorder(path, "block stats test", mode="hist", block_stats=True) as rec:
        rec.record(0, grads)
        rec.record(1, {k: v * F32(2 ** -20) for k, v in grads.items()})
    tr = fpscope.Trace(str(path))
    assert len(tr) == 2
    for i, scale in ((0, F32(1)), (1, F32(2 ** -20))):
        meta = {t["name"]: t for t in tr.step(i)["tensors"]}
        assert all(t["has_block_stats"] and not t["has_values"] for t in meta.values())
        for name, g in grads.items():
            x = (g * scale).reshape(-1, g.shape[-1])
            st = tr.block_stats(i, name)
            assert st["shape"] == x.shape
            for spec in ("mxfp8", "mxfp4:scaling_mode=ceil", "fp8-block:fp8_format=hybrid", "deepseek:ue8m0=true"):
                for role, axis in (("input", "row"), ("grad", "column"), ("weight", "row")):
                    check(st, x, spec, role, axis, exact=not (spec.startswith("fp8-block") and np.isinf(x).any()))


def test_recorder_without_block_stats_writes_none(tmp_path):
    from fpscope.record import Recorder

    path = tmp_path / "plain.h5"
    with Recorder(path, "plain", mode="both") as rec:
        rec.record(0, {"w": np.ones((4, 8), F32)})
    tr = fpscope.Trace(str(path))
    assert not tr.step(0)["tensors"][0]["has_block_stats"]
    with pytest.raises(ValueError, match="no block statistics"):
        tr.block_stats(0, "w")


def test_reader_checks_the_datasets(tmp_path):
    import h5py
    from fpscope.record import Recorder

    path = tmp_path / "bad.h5"
    x = np.random.default_rng(2).standard_normal((40, 64)).astype(F32)
    with Recorder(path, "bad", mode="hist", block_stats=True) as rec:
        rec.record(0, {"w": x})
    tr = fpscope.Trace(str(path))
    check(tr.block_stats(0, "w"), x, "mxfp8", "input", "row", exact=True)
    cases = [("bstats_counts", lambda a: a * 2, "sum to"),
             ("bstats_keys", lambda a: a[::-1], "strictly increasing"),
             ("bstats_shape", lambda a: a[:1], "two dimensions"),
             ("bstats_shape", lambda a: a[::-1] * 2, "@count"),
             ("bstats_thresholds", lambda a: a[::-1], "thresholds"),
             ("bstats_lengths", lambda a: a + 1, "lengths"),
             ("bstats_geometry", lambda a: a.astype(np.int32), "uint32")]
    for name, change, message in cases:
        bad = tmp_path / f"bad_{name}_{message[:3]}.h5"
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "r+") as f:
            g = f["steps/00000000/tensors/w"]
            a = change(g[name][()])
            del g[name]
            g.create_dataset(name, data=a)
        with pytest.raises(ValueError, match=message):
            fpscope.Trace(str(bad)).block_stats(0, "w")


@pytest.mark.parametrize("spec", ["mxfp8", "mxfp4:scaling_mode=ceil", "mxfp6:scaling_mode=even,rounding=rna",
                                  "fp8-block", "deepseek:ue8m0=true", "deepseek", "nvfp4:rht=false"])
def test_replay_of_block_recipes_counts_as_the_values_path(tmp_path, spec):
    # The replay counts power-of-two block recipes through the block statistics (operand.cpp
    # count_blocks), the others through block_quantize: either way what quantize counts, and the
    # scale the geometric mean of the blocks' scales.
    from fpscope.record import Recorder

    x = DATA["edge"]
    grads = {"edge": np.where(np.isinf(x), F32(3e38), x), "wide": DATA["wide"]}
    path = tmp_path / "g.h5"
    with Recorder(path, "replay", mode="raw") as rec:
        rec.record(0, grads)
    tensors = {t["name"]: t for t in fpscope.replay(path, spec)["steps"][0]["tensors"]}
    for name, g in grads.items():
        q = fpscope.quantize(g, spec, "input", "row")
        assert {c: tensors[name][c] for c in q["stats"]["counts"]} == q["stats"]["counts"], (name, spec)
        f = q["dequant_scale"][(q["dequant_scale"] > 0) & np.isfinite(q["dequant_scale"])].astype(np.float64)
        assert tensors[name]["scale"] == pytest.approx(np.exp2(-np.log2(f).mean()) if f.size else 1.0, rel=1e-12)


def test_flush_to_zero_does_not_change_the_statistics():
    # The recorder runs inside PyTorch processes, which may set FTZ/DAZ (torch.set_flush_denormal):
    # recording reads float32 subnormals through integer operations only.
    torch = pytest.importorskip("torch")
    x = DATA["edge"]
    assert (np.abs(x[16]) < np.finfo(np.float32).tiny).any()  # subnormals present
    ref = fpscope.block_stats(x, threads=1)
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero mode")
    try:
        got = fpscope.block_stats(x, threads=1)
    finally:
        torch.set_flush_denormal(False)
    for g1, g2 in zip(ref["geometries"], got["geometries"]):
        for k in ("elements", "blocks", "minima"):
            assert np.array_equal(g1[k][0], g2[k][0]) and np.array_equal(g1[k][1], g2[k][1]), (g1["block"], k)


def test_the_shipped_operand_trace_answers_as_its_values():
    """datasets/traces/lm-operands.h5 (a real transformer's GEMM operands): its last step holds
    both the raw operands and their block statistics, recorded by the recorder from the same
    tensors. Every operand under every GEMM it feeds: the power-of-two recipes' answers from the
    statistics equal block_quantize's on the values (counts, scales, clipped and vanishing blocks)."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "datasets" / "traces" / "lm-operands.h5"
    tr = fpscope.Trace(str(path))
    i = len(tr) - 1
    gemms = {"input": ("row", "column"), "weight": ("row", "column"), "grad": ("row", "column")}
    checked = 0
    for t in tr.step(i)["tensors"]:
        op = t["operand"]
        if op is None or op["role"] not in gemms:
            continue
        assert t["has_values"] and t["has_block_stats"], t["name"]
        x = tr.values(i, t["name"]).reshape(op["gemm_shape"])
        st = tr.block_stats(i, t["name"])
        for axis in gemms[op["role"]]:
            for spec in ("mxfp8", "mxfp8:scaling_mode=floor", "mxfp4", "fp8-block", "deepseek:ue8m0=true"):
                check(st, x, spec, op["role"], axis, exact=True)
                checked += 1
    assert checked == 51 * 2 * 5


def test_recorder_block_stats_choices(tmp_path):
    """block_stats= takes False, True or "operands" (the recorder's, or record()'s for one step);
    anything else is refused before a file is made or a step is queued."""
    from fpscope.record import Recorder

    with pytest.raises(ValueError, match="block_stats must be"):
        Recorder(tmp_path / "bad.h5", "bad", block_stats="all")
    assert not (tmp_path / "bad.h5").exists()
    g = {"w": np.ones((4, 32), dtype=F32)}
    with Recorder(tmp_path / "run.h5", "choices", mode="hist") as rec:
        with pytest.raises(ValueError, match="block_stats must be"):
            rec.record(0, g, block_stats=2)
        rec.record(1, g, block_stats=True)
        rec.record(2, g, block_stats="operands")  # no watched operands: nothing gets them
        rec.record(3, g)
    tr = fpscope.Trace(str(tmp_path / "run.h5"))
    assert [tr.step(i)["tensors"][0]["has_block_stats"] for i in range(len(tr))] == [True, False, False]
