"""GEMM operand traces (docs/trace.md, "GEMM operands", minor version 2) through the C++ reader:
the roles it exposes, every bad attribute refused with one error line naming the step and the
tensor, and traces of minor versions 0 and 1 still read."""
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import fpscope

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "record"))
from fpscope_record import Recorder  # noqa: E402

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def op_trace(tmp_path_factory):
    """Two steps of a 2-layer MLP on a (4, 8, 12) input, every Linear watched, raw values."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.GELU(), torch.nn.Linear(20, 12))
    x = torch.randn(4, 8, 12)  # 32 tokens: NVFP4's Hadamard transform needs a multiple of 16
    path = tmp_path_factory.mktemp("ops") / "op.h5"
    with Recorder(path, "operand test", background=False) as rec:
        rec.watch(net)
        for step in range(2):
            loss = net(x).square().mean()
            net.zero_grad()
            loss.backward()
            rec.record(step, net.named_parameters(), loss=loss)
    return path


def test_reader_exposes_roles_layers_and_gemm_shapes(op_trace):
    t = fpscope.Trace(str(op_trace))
    ops = {x["name"]: x["operand"] for x in t.step(1)["tensors"]}
    assert ops == {"0.weight": {"role": "wgrad", "layer": "0", "gemm_shape": (20, 12)}, "0.bias": None,
                   "2.weight": {"role": "wgrad", "layer": "2", "gemm_shape": (12, 20)}, "2.bias": None,
                   "0:input": {"role": "input", "layer": "0", "gemm_shape": (32, 12)},
                   "0:weight": {"role": "weight", "layer": "0", "gemm_shape": (20, 12)},
                   "0:grad": {"role": "grad", "layer": "0", "gemm_shape": (32, 20)},
                   "2:input": {"role": "input", "layer": "2", "gemm_shape": (32, 20)},
                   "2:weight": {"role": "weight", "layer": "2", "gemm_shape": (12, 20)},
                   "2:grad": {"role": "grad", "layer": "2", "gemm_shape": (32, 12)}}


@pytest.mark.parametrize("path,minor", [("datasets/traces/digits-mlp.h5", None), ("datasets/traces/lm-char.h5", None),
                                        ("datasets/traces/ranks/tp/rank1.h5", 1)])
def test_traces_of_minor_versions_0_and_1_still_read(path, minor):
    with h5py.File(ROOT / path, "r") as f:
        assert f.attrs.get("fpscope_trace_minor") == minor  # what this test is about: 1.0 and 1.1 files
    t = fpscope.Trace(str(ROOT / path))
    s = t.step(len(t) - 1)
    assert s["tensors"] and all(x["operand"] is None for x in s["tensors"])


T = "steps/00000001/tensors/"
NOT_AN_OPERAND = "drop"  # as a value keyed by another tensor's name: that tensor loses its three attributes
BAD = [
    ("0:input", {"role": None}, "@role, @layer and @gemm_shape together"),
    ("0:input", {"gemm_shape": None, "layer": None}, "together"),
    ("0:input", {"role": np.bytes_(b"output")}, "@role 'output' is not input, weight, grad or wgrad"),
    ("0:input", {"role": np.int64(1)}, "'role' is not a string"),
    ("0:input", {"layer": np.bytes_(b"")}, "@layer is empty"),
    ("0:input", {"layer": np.bytes_(b"x" * 5000)}, "@layer is absurdly long"),
    ("0:input", {"gemm_shape": np.array([32], np.int64)}, "@gemm_shape has 1 dimensions, not 2"),
    ("0:input", {"gemm_shape": np.array([32, 12, 1], np.int64)}, "not 2"),
    ("0:input", {"gemm_shape": np.array([21, 12], np.int64)}, "@gemm_shape 21 x 12 does not hold the tensor's 384 elements"),
    ("0:input", {"gemm_shape": np.array([-32, -12], np.int64)}, "negative dimension"),
    ("0:input", {"gemm_shape": np.array([1 << 62, 1 << 62], np.int64)}, "does not hold"),
    ("0:input", {"gemm_shape": np.array([64, 6], np.int64)}, "columns (6) are not the last dimension of @shape"),
    ("0:input", {"gemm_shape": np.array([32.0, 12.0])}, "not a list of integers"),
    ("2:input", {"layer": np.bytes_(b"0"), "0:input": NOT_AN_OPERAND}, "cannot be one Linear's operands (X cols = W cols)"),
    ("2:grad", {"layer": np.bytes_(b"0"), "0:grad": NOT_AN_OPERAND}, "(dY cols = W rows)"),
    ("0:input", {"gemm_shape": np.array([16, 24], np.int64), "shape": np.array([16, 24], np.int64),
                 "0:weight": NOT_AN_OPERAND, "0.weight": NOT_AN_OPERAND}, "(X rows = dY rows)"),
    ("0:grad", {"layer": np.bytes_(b"2")}, "layer '2' has a second grad operand"),
    ("2.weight", {"layer": np.bytes_(b"0"), "0.weight": NOT_AN_OPERAND}, "(dW shape = W shape)"),
    ("0:grad", {"role": np.bytes_(b"input")}, "layer '0' has a second input operand"),
]


@pytest.mark.parametrize("tensor,attrs,words", BAD, ids=[f"{t}-{sorted(a)}-{w[:20]}" for t, a, w in BAD])
def test_reader_refuses_a_bad_operand_description(op_trace, tmp_path, tensor, attrs, words):
    f = tmp_path / "bad.h5"
    shutil.copy(op_trace, f)
    with h5py.File(f, "r+") as h:
        for k, v in attrs.items():
            if isinstance(v, str) and v == NOT_AN_OPERAND:
                for a in ("role", "layer", "gemm_shape"):
                    del h[T + k].attrs[a]
            elif v is None:
                del h[T + tensor].attrs[k]
            elif isinstance(v, np.bytes_):
                h[T + tensor].attrs.create(k, np.array(v, dtype=h5py.string_dtype("utf-8", max(len(v), 1))))
            else:
                h[T + tensor].attrs[k] = v
    t = fpscope.Trace(str(f))
    t.step(0)  # the other step is untouched
    with pytest.raises(ValueError) as e:
        t.step(1)
    msg = str(e.value)
    assert words in msg and "\n" not in msg and "step 00000001" in msg, msg


# ---- fpscope.recipes_report: `fpscope recipes TRACE --json` in Python, plus arrays ----

def test_recipes_report_cells_are_quantize_on_the_recorded_operands(op_trace):
    """Each cell is fpscope.quantize of the recorded operand as its role, blocks along the GEMM's
    reduction dimension: columns checked as rows of the transpose (not through the axis code)."""
    d = fpscope.recipes_report(op_trace, ["mxfp8", "mxfp4:scaling_mode=floor", "nvfp4:sr=false,rht=false"])
    t = fpscope.Trace(str(op_trace))
    assert d["step"] == 1 and d["layers"] == ["0", "2"] and len(d["operands"]) == 2 * 6
    # docs/recipes.md's table, written out here: which GEMMs each operand feeds, blocks along what
    table = {("input", "fprop"): "row", ("input", "wgrad"): "column", ("weight", "fprop"): "row",
             ("weight", "dgrad"): "column", ("grad", "dgrad"): "row", ("grad", "wgrad"): "column"}
    assert [(o["role"], o["gemm"], o["axis"]) for o in d["operands"]] == [(*k, a) for k, a in table.items()] * 2
    for o in d["operands"]:
        v = t.values(1, o["tensor"]).reshape(o["matrix"])
        # (without stochastic rounding, keyed by the element's index, nor the Hadamard transform:
        # neither is the same on the transpose)
        for spec, r in zip(d["recipes"], o["results"]):
            if o["axis"] == "column" and not (spec.startswith("nvfp4") and o["role"] == "weight"):  # 2-D tiles: either way
                q = fpscope.quantize(np.ascontiguousarray(v.T), spec, o["role"], "row")
            else:
                q = fpscope.quantize(v, spec, o["role"], o["axis"])
            assert q["stats"]["counts"] == r["counts"] and q["stats"]["blocks"] == r["blocks"], (o["tensor"], o["gemm"], spec)


def test_recipes_report_arrays_and_verdicts(op_trace):
    d = fpscope.recipes_report(op_trace, ["nvfp4", "mxfp8"], keep_bf16=0.02)
    lost = d["arrays"]["lost"]
    assert lost.shape == (2, 2, 6) and not np.isnan(lost).any()
    for o in d["operands"]:
        at = (d["layers"].index(o["layer"]), fpscope.OPERAND_GEMMS.index((o["role"], o["gemm"])))
        assert [lost[(k, *at)] for k in range(2)] == [r["lost_fraction"] for r in o["results"]]
    for k, rv in enumerate(d["summary"]["recipes"]):
        assert rv["keep_bf16"] == [layer for i, layer in enumerate(d["layers"]) if lost[k, i].max() > 0.02]
    assert d["summary"]["recipes"][0]["keep_bf16"] == ["0", "2"]  # NVFP4 loses over 2% of some operand of each
    assert d["summary"]["ranking"] == ["mxfp8", "nvfp4"] and d["summary"]["best_per_layer"] == {"0": "mxfp8", "2": "mxfp8"}
    assert fpscope.recipes_report(op_trace, "mxfp8")["summary"]["recipes"][0]["keep_bf16"] == []  # no budget: no list
    assert fpscope.recipes_report(op_trace, "mxfp8", step=0)["step"] == 0


@pytest.mark.parametrize("kw,words", [
    ({"recipes": "nvfp5"}, "unknown policy"), ({"recipes": "torch"}, "does not quantize"), ({"recipes": []}, "recipes"),
    ({"recipes": [1]}, "recipes"), ({"step": -1}, "step"), ({"step": 1.5}, "step"), ({"step": True}, "step"),
    ({"step": 9}, "step index 9"), ({"keep_bf16": 1.5}, "keep_bf16"), ({"keep_bf16": -0.1}, "keep_bf16"),
    ({"keep_bf16": "0.1"}, "keep_bf16"),
])
def test_recipes_report_bad_options(op_trace, kw, words):
    with pytest.raises(ValueError) as e:
        fpscope.recipes_report(op_trace, **kw)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_recipes_report_on_traces_without_operands_and_hostile_files(tmp_path):
    with pytest.raises(ValueError, match="records no GEMM operands"):
        fpscope.recipes_report(ROOT / "datasets" / "traces" / "digits-mlp.h5")
    bad = tmp_path / "cut.h5"
    bad.write_bytes((ROOT / "datasets" / "traces" / "digits-mlp.h5").read_bytes()[:5000])
    with pytest.raises(ValueError):
        fpscope.recipes_report(bad)
    with pytest.raises(ValueError, match="one trace"):
        fpscope.recipes_report([bad, bad])
