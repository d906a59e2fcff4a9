"""fpscope recipes end to end: GEMM operands under block recipes (issue 16). The numbers are the
library's (checked bit for bit in tests/python/test_block_quant.py); here: what the command
reads, that its JSON, CSV and table agree, a count checked against NumPy, the worst-operand
summary, and its errors."""
import csv
import io

import numpy as np
import pytest

from conftest import assert_one_line_error


def save(tmp, name, a):
    p = tmp / name
    np.save(p, a)
    return p


def test_json_csv_and_a_count_numpy_predicts(fpscope, tmp):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    p = save(tmp, "x.npy", x)
    out = fpscope.json("recipes", p, "-r", "mxfp8:scaling_mode=floor", "-r", "mxfp8", "--json")
    assert out["role"] == "input" and out["axis"] == "row"
    (op,) = out["operands"]
    assert op["shape"] == [64, 1024] and op["matrix"] == [64, 1024]
    ocp, te = op["results"]
    # OCP floor clips a block exactly where its amax significand is beyond 1.8125 (464 / 256).
    amax = np.abs(x.reshape(64, 32, 32)).max(-1)
    sig = amax / np.exp2(np.floor(np.log2(amax)))
    assert ocp["clipped_blocks"] == int((sig > 1.8125).sum()) > 0 and te["clipped_blocks"] == 0
    assert ocp["blocks"] == te["blocks"] == 64 * 32
    assert sum(ocp["counts"].values()) == x.size and ocp["block_shape"] == [1, 32]
    rows = list(csv.DictReader(io.StringIO(fpscope.ok("recipes", p, "-r", "mxfp8:scaling_mode=floor", "-r", "mxfp8", "--csv"))))
    assert [r["recipe"] for r in rows] == ["mxfp8:scaling_mode=floor", "mxfp8"]
    assert int(rows[0]["clipped_blocks"]) == ocp["clipped_blocks"]
    assert int(rows[0]["overflow"]) == ocp["counts"]["overflow"]


def test_gemm_orientation_and_weight_tiles(fpscope, tmp):
    p = save(tmp, "w.npy", np.ones((40, 300), np.float32))
    out = fpscope.json("recipes", p, "--role", "weight", "--gemm", "dgrad", "-r", "mxfp8", "-r", "nvfp4", "-r", "fp8-block",
                       "--json")
    assert out["axis"] == "column"
    shapes = [r["block_shape"] for r in out["operands"][0]["results"]]
    assert shapes == [[32, 1], [16, 16], [128, 128]]
    assert [r["blocks"] for r in out["operands"][0]["results"]] == [2 * 300, 3 * 19, 1 * 3]  # partial edge blocks


def test_table_names_the_worst_operand(fpscope, tmp):
    rng = np.random.default_rng(1)
    calm = save(tmp, "calm.npy", rng.standard_normal((32, 256)).astype(np.float32))
    wild = rng.standard_normal((32, 256)).astype(np.float32) * np.exp2(rng.integers(-20, 20, (32, 256))).astype(np.float32)
    wild = save(tmp, "wild.npy", wild)
    text = fpscope.ok("recipes", calm, wild, "-r", "te-current")
    summary = text.split("worst operands per recipe")[1]
    line = summary.splitlines()[1].split()
    assert line[0] == "te-current" and line[1].endswith("wild.npy"), line


@pytest.mark.parametrize("args,words,status", [
    (["-r", "bogus"], ["unknown policy"], 2),
    (["-r", "torch"], ["does not quantize"], 2),
    (["--role", "bias"], ["unknown role"], 2),
    (["--role", "weight", "--gemm", "wgrad"], ["no weight operand"], 2),
    (["--axis", "row", "--gemm", "fprop"], ["excludes"], 2),
])
def test_usage_errors(fpscope, tmp, args, words, status):
    p = save(tmp, "x.npy", np.ones((2, 32), np.float32))
    assert_one_line_error(fpscope.run("recipes", p, *args), *words, status=status)


def test_input_errors(fpscope, tmp):
    assert_one_line_error(fpscope.run("recipes", tmp / "missing.npy"), "missing.npy", status=1)
    p = save(tmp, "i.npy", np.ones((2, 32), np.int32))
    assert_one_line_error(fpscope.run("recipes", p), "unsupported dtype", status=1)
    e = save(tmp, "e.npy", np.ones((0, 32), np.float32))
    assert_one_line_error(fpscope.run("recipes", e), "non-empty", status=1)


TRACE = __import__("pathlib").Path(__file__).resolve().parents[2] / "datasets" / "traces" / "digits-mlp.h5"


def test_a_traces_recorded_tensors(fpscope, tmp):
    out = fpscope.json("recipes", TRACE, "--role", "weight", "-r", "nvfp4", "-r", "mxfp8", "--json")
    names = [o["path"] for o in out["operands"]]
    assert names and all(n.endswith("@398") for n in names), names  # the last step with raw values
    w = next(o for o in out["operands"] if o["path"].startswith("0.weight"))
    assert w["shape"] == [32, 64] and w["results"][0]["block_shape"] == [16, 16]
    assert sum(w["results"][0]["counts"].values()) == 32 * 64
    first = fpscope.json("recipes", TRACE, "--step", "0", "-r", "mxfp8", "--json")
    assert all(o["path"].endswith("@0") for o in first["operands"])


@pytest.mark.parametrize("args,words", [
    (["--step", "100000"], ["--step 100000", "steps 0 to"]),
    (["x.npy"], ["one trace per run"]),
])
def test_trace_usage_errors(fpscope, tmp, args, words):
    save(tmp, "x.npy", np.ones((2, 32), np.float32))
    args = [tmp / a if a.endswith(".npy") else a for a in args]
    assert_one_line_error(fpscope.run("recipes", TRACE, *args), *words, status=2)


def test_step_needs_a_trace(fpscope, tmp):
    p = save(tmp, "x.npy", np.ones((2, 32), np.float32))
    assert_one_line_error(fpscope.run("recipes", p, "--step", "1"), "applies to a trace", status=2)


def test_keep_bf16_names_the_operands_over_the_budget(fpscope, tmp):
    args = [TRACE, "--role", "weight", "-r", "nvfp4", "-r", "mxfp8"]
    out = fpscope.json("recipes", *args, "--json")
    over = {o["path"] for o in out["operands"] if o["results"][0]["lost_fraction"] > 0.05}
    assert over and len(over) < len(out["operands"])  # the budget splits the operands
    assert all(o["results"][1]["lost_fraction"] <= 0.05 for o in out["operands"])
    text = fpscope.ok("recipes", *args, "--keep-bf16", "0.05").split("keep in BF16")[1].splitlines()
    nvfp4 = next(line for line in text if line.split()[:1] == ["nvfp4"])
    assert {w.rstrip(",") for w in nvfp4.split()[1::2]} == over, nvfp4
    assert next(line for line in text if line.split()[:1] == ["mxfp8"]).split()[1] == "none"
    assert_one_line_error(fpscope.run("recipes", TRACE, "--keep-bf16", "2"), "fraction in [0, 1]", status=2)


def test_plot_heatmap(fpscope, tmp):
    svg = tmp / "lost.svg"
    fpscope.ok("recipes", TRACE, "--role", "weight", "-r", "nvfp4", "-r", "mxfp8", "--plot", svg)
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    png = tmp / "lost.png"
    fpscope.ok("recipes", TRACE, "-r", "nvfp4", "--plot", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert_one_line_error(fpscope.run("recipes", TRACE, "--plot", tmp / "x.pdf"), "svg or .png", status=2)
    assert not (tmp / "x.pdf").exists()


# ---- a trace of GEMM operands (datasets/traces/lm-operands.h5: every nn.Linear of a 4-layer
# transformer, X, W and dY raw at two steps; docs/trace.md, "GEMM operands") ----

OPS = TRACE.parent / "lm-operands.h5"
CELLS = [("input", "fprop", "row"), ("input", "wgrad", "column"), ("weight", "fprop", "row"),
         ("weight", "dgrad", "column"), ("grad", "dgrad", "row"), ("grad", "wgrad", "column")]  # docs/recipes.md's table
LAYERS = [f"blocks.{i}.{m}" for i in range(4) for m in ("qkv", "proj", "fc1", "fc2")] + ["head"]


@pytest.fixture(scope="module")
def ops_json(fpscope):
    return fpscope.json("recipes", OPS, "-r", "nvfp4", "-r", "mxfp8", "-r", "mxfp8:scaling_mode=floor", "--keep-bf16",
                        "0.05", "--json")


def test_operand_trace_every_layer_role_and_gemm(ops_json):
    out = ops_json
    assert out["step"] == 275 and out["layers"] == LAYERS and out["skipped"] == []
    cells = [(o["layer"], o["role"], o["gemm"], o["axis"]) for o in out["operands"]]
    assert cells == [(layer, *c) for layer in LAYERS for c in CELLS]
    for o in out["operands"]:
        rows, cols = o["matrix"]
        assert o["tensor"] == f"{o['layer']}:{o['role']}"
        assert all(sum(r["counts"].values()) == rows * cols for r in o["results"])
    x = next(o for o in out["operands"] if o["layer"] == "blocks.0.fc2" and o["role"] == "input")
    assert x["matrix"] == [4 * 32, 1024]  # tokens (batch 4 x context 32) x in
    w = next(o for o in out["operands"] if o["layer"] == "blocks.0.qkv" and o["role"] == "weight")
    assert w["matrix"] == [768, 256] and w["results"][0]["block_shape"] == [16, 16]  # nvfp4's 2-D weight blocks
    dy = next(o for o in out["operands"] if o["layer"] == "head" and o["gemm"] == "wgrad" and o["role"] == "grad")
    assert dy["results"][1]["block_shape"] == [32, 1]  # mxfp8 blocks along the tokens in wgrad


def test_operand_trace_orientation_is_the_npy_path_on_the_transpose(fpscope, tmp, ops_json):
    """A column-blocked cell is the row-blocked quantization of the transposed operand (read
    from the file with h5py, widened from bfloat16 by hand), through the .npy path."""
    import h5py

    with h5py.File(OPS, "r") as f:
        t = f["steps/00000275/tensors"]
        bits = {n: np.asarray(t[f"blocks.1.fc1:{n}"]["values"]) for n in ("input", "grad")}
        shapes = {n: tuple(t[f"blocks.1.fc1:{n}"].attrs["gemm_shape"]) for n in ("input", "grad")}
    for role in ("input", "grad"):
        v = (bits[role].astype(np.uint32) << 16).view(np.float32).reshape(shapes[role])
        p = save(tmp, f"{role}T.npy", np.ascontiguousarray(v.T))
        want = fpscope.json("recipes", p, "--role", role, "--axis", "row", "-r", "mxfp8", "-r", "mxfp8:scaling_mode=floor",
                            "--json")["operands"][0]["results"]
        got = next(o for o in ops_json["operands"] if o["layer"] == "blocks.1.fc1" and o["role"] == role and o["gemm"] == "wgrad")
        for a, b in zip(got["results"][1:], want):
            assert a["counts"] == b["counts"] and a["clipped_blocks"] == b["clipped_blocks"] and a["blocks"] == b["blocks"]
            assert a["sqnr_db"] == pytest.approx(b["sqnr_db"], rel=1e-12)


def lost_of(result):
    return result["counts"]["underflow"] + result["counts"]["overflow"]


def test_operand_trace_verdicts_follow_from_the_counts(ops_json):
    out, s = ops_json, ops_json["summary"]
    assert s["budget"] == 0.05 and [r["recipe"] for r in s["recipes"]] == out["recipes"]
    for k, rv in enumerate(s["recipes"]):
        worst = {layer: max(o["results"][k]["lost_fraction"] for o in out["operands"] if o["layer"] == layer) for layer in LAYERS}
        assert rv["keep_bf16"] == [layer for layer in LAYERS if worst[layer] > 0.05]
        assert sorted(x["layer"] for x in rv["layers"]) == sorted(LAYERS)  # every layer, worst first
        assert [x["worst_lost"] for x in rv["layers"]] == [worst[x["layer"]] for x in rv["layers"]]
        assert [x["worst_lost"] for x in rv["layers"]] == sorted(worst.values(), reverse=True)
        lost = sum(lost_of(o["results"][k]) for o in out["operands"])
        nonzero = sum(o["results"][k]["counts"][c] for o in out["operands"] for c in ("underflow", "subnormal", "normal", "overflow"))
        assert (rv["lost"], rv["nonzero"]) == (lost, nonzero)
    fractions = {r["recipe"]: r["lost_fraction"] for r in s["recipes"]}
    assert s["ranking"] == sorted(fractions, key=fractions.get)
    # on this model: NVFP4 keeps every layer in BF16 at a 5% budget; MXFP8 only the attention
    # projections whose dY, blocked along the tokens of a sequence (wgrad), spans too many binades
    assert len(s["recipes"][0]["keep_bf16"]) == 17 and s["ranking"][0] == "mxfp8"
    assert 0 < len(s["recipes"][1]["keep_bf16"]) < 17 and all(x.endswith(".qkv") for x in s["recipes"][1]["keep_bf16"])


def test_operand_trace_table_csv_and_plot(fpscope, tmp, ops_json):
    args = [OPS, "-r", "nvfp4", "-r", "mxfp8", "-r", "mxfp8:scaling_mode=floor", "--keep-bf16", "0.05"]
    text = fpscope.ok("recipes", *args)
    assert text.startswith(f"{OPS}: step 275 (index 11): 17 layers, 102 operand x GEMM cells, 3 recipes")
    summary = text.split("worst layers per recipe")[1]
    s = ops_json["summary"]
    nvfp4_line = next(line for line in summary.splitlines() if line.split()[:1] == ["nvfp4"])
    assert nvfp4_line.split()[1] == s["recipes"][0]["layers"][0]["layer"]
    keep = summary.split("keep in BF16")[1].splitlines()
    mx = s["recipes"][1]["keep_bf16"]
    assert next(line for line in keep if line.split()[:1] == ["mxfp8"]).split()[1:] == [str(len(mx)), "of", "17",
                                                                                         "layers:", *(", ".join(mx)).split()]
    assert summary.split("loses least over the step")[1].splitlines()[1].split()[1] == s["ranking"][0]
    rows = list(csv.DictReader(io.StringIO(fpscope.ok("recipes", *args, "--csv"))))
    assert len(rows) == 102 * 3 and {r["role"] for r in rows} == {"input", "weight", "grad"}
    assert [(r["layer"], r["role"], r["gemm"], r["recipe"]) for r in rows[:3]] == [
        ("blocks.0.qkv", "input", "fprop", x) for x in ("nvfp4", "mxfp8", "mxfp8:scaling_mode=floor")]
    assert float(rows[0]["lost_fraction"]) == pytest.approx(ops_json["operands"][0]["results"][0]["lost_fraction"], rel=1e-5)
    svg = tmp / "layers.svg"
    fpscope.ok("recipes", *args, "--plot", svg)
    assert "<svg" in svg.read_text()


def test_operand_trace_steps_and_errors(fpscope, tmp):
    earlier = fpscope.json("recipes", OPS, "--step", "4", "-r", "mxfp8", "--json")
    assert earlier["step"] == 100 and len(earlier["operands"]) == 102
    assert_one_line_error(fpscope.run("recipes", OPS, "--step", "1"),
                          "step 25 holds no operands with raw values or block statistics", status=1)
    assert_one_line_error(fpscope.run("recipes", OPS, "--step", "99"), "step index 99", status=2)
    assert_one_line_error(fpscope.run("recipes", OPS, "--role", "weight"), "do not apply to a trace of GEMM operands", status=2)
    assert_one_line_error(fpscope.run("recipes", OPS, "--gemm", "fprop"), "do not apply", status=2)


@pytest.mark.parametrize("tensor,attr,value,words", [
    ("head:input", "role", b"output", "@role 'output' is not input, weight, grad or wgrad"),
    ("head:input", "gemm_shape", np.array([127, 256], np.int64), "@gemm_shape 127 x 256 does not hold"),
    ("head:grad", "layer", b"blocks.0.qkv", "layer 'blocks.0.qkv' has a second grad operand"),
    ("head:weight", "role", None, "@role, @layer and @gemm_shape together"),
])
def test_operand_trace_with_a_bad_description_is_one_error_line(fpscope, tmp, tensor, attr, value, words):
    import shutil

    import h5py

    bad = tmp / "bad.h5"
    shutil.copy(OPS, bad)
    with h5py.File(bad, "r+") as f:
        a = f[f"steps/00000275/tensors/{tensor}"].attrs
        if value is None:
            del a[attr]
        elif isinstance(value, bytes):
            a.create(attr, np.array(value, dtype=h5py.string_dtype("utf-8", len(value))))
        else:
            a[attr] = value
    r = fpscope.run("recipes", bad, "-r", "mxfp8")
    assert_one_line_error(r, words, "step 00000275", tensor, status=1)


def test_operand_trace_answered_from_block_statistics(fpscope):
    """Step 100 of the shipped operand trace holds block statistics and no values: the report
    answers from them (source block_stats); a power-of-two recipe exactly (its counts have no
    upper bound apart), DeepSeek's float scales as bounds (low <= high, some apart), NVFP4 not at
    all (no 1x16 blocks recorded; the wgrad transform mixes elements), and recipes left
    unanswered rank after the answered ones."""
    d = fpscope.json("recipes", OPS, "--step", "4", "-r", "mxfp8", "-r", "deepseek", "-r", "nvfp4", "--json")
    assert d["step"] == 100 and d["skipped"] == [] and len(d["operands"]) == 102
    apart = 0
    for op in d["operands"]:
        mx, ds, nv = op["results"]
        assert mx["source"] == ds["source"] == nv["source"] == "block_stats"
        assert mx["sqnr_db"] is None and "unanswered" not in mx
        assert "high" not in mx or mx["high"]["counts"] == mx["counts"], op["tensor"]
        assert all(ds["counts"][c] <= ds["high"]["counts"][c] for c in ds["counts"]) if "high" in ds else ds["exact"]
        apart += "high" in ds and ds["high"]["counts"] != ds["counts"]
        assert nv["exact"] is False and nv["unanswered"]
    assert apart > 0
    summary = {r["recipe"]: r for r in d["summary"]["recipes"]}
    assert summary["nvfp4"]["unanswered"] == 102 and summary["mxfp8"]["unanswered"] == 0
    assert d["summary"]["ranking"][-1] == "nvfp4"
    text = fpscope.run("recipes", OPS, "--step", "4", "-r", "mxfp8", "-r", "nvfp4")
    assert text.returncode == 0 and "(block stats)" in text.stdout
    assert "not answerable from the block statistics" in text.stdout
    rows = fpscope.run("recipes", OPS, "--step", "4", "-r", "mxfp8", "-r", "nvfp4", "--csv").stdout.splitlines()
    assert len(rows) == 1 + 2 * 102 and all(len(r.split(",")) == len(rows[0].split(",")) for r in rows)
    assert rows[1].endswith(",block_stats,true") or rows[1].endswith(",block_stats,false")
