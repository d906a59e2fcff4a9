"""The committed traces (datasets/traces): each opens, follows docs/trace.md exactly (every
attribute against its values, every histogram against an independent count of its values), has
the documented steps, and holds what datasets/README.md says it holds."""
import functools
import json
import math

import h5py
import numpy as np
import pytest

import tracecheck
from conftest import ROOT

TRACES = ROOT / "datasets" / "traces"
LM_GRADS = ROOT / "datasets" / "lm-grads"


@functools.lru_cache(maxsize=None)
def load(name):
    """(h5py.File, check_trace of it): the whole format check, every histogram against its values."""
    f = h5py.File(TRACES / f"{name}.h5", "r")
    return f, tracecheck.check_trace(f)


@pytest.fixture(params=["digits-mlp", "lm-char", "synthetic"])
def trace(request):
    return (request.param, *load(request.param))


def test_structure(trace):
    name, f, steps = trace
    assert f.attrs["producer"].decode().startswith("fpscope_record 1 (")
    assert name.split("-")[0] in f.attrs["model"].decode().lower() or name == "lm-char"
    want = {"digits-mlp": list(range(0, 400, 2)), "lm-char": [1] + list(range(2, 401, 2)),
            "synthetic": list(range(12))}[name]
    assert [int(s) for s in steps] == want
    assert name == "synthetic" or len(steps) >= 200


def test_digits():
    _, steps = load("digits-mlp")
    shapes = {"0.weight": (32, 64), "0.bias": (32,), "2.weight": (32, 32), "2.bias": (32,), "4.weight": (10, 32),
              "4.bias": (10,)}
    losses = []
    for link, (attrs, tensors) in steps.items():
        assert {n: a["shape"] for n, a, _ in tensors} == shapes
        assert all(set(d) == {"values", "hist_keys", "hist_counts"} for _, _, d in tensors)
        assert attrs["lr"] == 3e-3 and attrs["loss_scale"] == 1.0
        losses.append(attrs["loss"])
    assert losses[0] > 2.0 and np.mean(losses[-20:]) < 0.5  # it learned


def test_lm_char_is_the_lm_grads_run():
    # the same run as datasets/lm-grads (same script, seed, corpus): bit-identical gradients
    _, steps = load("lm-char")
    meta = json.loads((LM_GRADS / "meta.json").read_text())
    names = [n for n, _ in meta["parameters"]]
    for link, (attrs, tensors) in steps.items():
        assert [n for n, _, _ in tensors] == names
        assert [list(a["shape"]) for _, a, _ in tensors] == [s for _, s in meta["parameters"]]
        raw = int(link) == 1 or int(link) % 50 == 0
        assert all(("values" in d) == raw and "hist_keys" in d for _, _, d in tensors), link
    for step in (1, 100, 300):
        flat = np.concatenate([d["values"] for _, _, d in steps[f"{step:08d}"][1]])
        ref = np.load(LM_GRADS / f"step{step:04d}.npy")
        assert np.array_equal(flat.view(np.uint32), ref.view(np.uint32)), step
        assert math.isclose(steps[f"{step:08d}"][0]["loss"],
                            [r["loss"] for r in meta["recorded"] if r["step"] == step][0], rel_tol=1e-12)
    ref = np.load(LM_GRADS / "step0010.npy")  # step 10: histograms only; they count lm-grads' values
    at = 0
    for _, a, d in steps["00000010"][1]:
        keys, counts = tracecheck.histogram_of(ref[at : at + a["count"]])
        at += a["count"]
        assert np.array_equal(keys, d["hist_keys"]) and np.array_equal(counts, d["hist_counts"])
    assert at == ref.size
    losses = [s[0]["loss"] for s in steps.values()]
    assert losses[0] > 4.0 and np.mean(losses[-10:]) < 2.0


def test_synthetic_known_answers():
    _, steps = load("synthetic")
    order = ["w", "b", "enc/layer%1.weight", "h", "bf", "zeros", "sub", "empty", "scalar", "ones"]
    fp16_max = 65504.0
    for link, (attrs, tensors) in steps.items():
        step = int(link)
        t = {n: (a, d) for n, a, d in tensors}
        assert [n for n, _, _ in tensors] == order
        assert (math.isnan(attrs["loss"]) if step == 3 else attrs["loss"] == 10 / (step + 1))
        assert (math.isnan(attrs["lr"]) if step == 4 else attrs["lr"] == 0.01)
        assert attrs["loss_scale"] == (65536.0 if step <= 5 else 32768.0)
        members = {"both": {"values", "hist_keys", "hist_counts"}, "hist": {"hist_keys", "hist_counts"},
                   "raw": {"values"}}["hist" if step == 10 else "raw" if step == 11 else "both"]
        assert all(set(d) == members for _, _, d in tensors)
        # overflow of fp16 at scale 2^16 only at step 5 (b), never at 2^15; step 7 inf, step 9 NaN
        amax = max(a["amax"] for a, _ in t.values())
        assert (amax * 2 ** 16 > fp16_max) == (step == 5) and amax * 2 ** 15 < fp16_max
        assert t["b"][0]["amax"] == (1.5 if step == 5 else 2.0 ** -8)
        assert t["w"][0]["amax"] == (15 if step == 7 else 16) * 2.0 ** -10 * (step + 1)
        assert t["w"][0]["infs"] == (step == 7) and t["b"][0]["nans"] == (step == 9)
        assert sum(a["infs"] + a["nans"] for a, _ in t.values()) == (step in (7, 9))
        assert t["zeros"][0]["zeros"] == 10 and t["zeros"][0]["amax"] == 0
        assert t["sub"][0]["amax"] == float(np.array([0x007FFFFF], np.uint32).view(np.float32)[0])
        assert t["empty"][0]["count"] == 0 and t["empty"][0]["shape"] == (0,)
        assert t["scalar"][0]["shape"] == () and t["scalar"][0]["zeros"] == (step == 0)
        assert t["h"][0]["dtype"] == "float16" and t["bf"][0]["dtype"] == "bfloat16"
        if "values" in t["h"][1]:
            assert t["h"][1]["values"].dtype == np.dtype("<u2")
            assert t["h"][1]["values"].tolist() == [0x3800, 0xB400, 0x3000, 0x0001, 0x8000, 0x1400, 0x3554, 0x0400]
            assert t["bf"][1]["values"].dtype == np.dtype("<u2")
            assert t["bf"][1]["values"].tolist() == [0x3F00, 0xBF00, 0x0001, 0x3DCD, 0x0000, 0x0080]
            sub = tracecheck.widen("float32", t["sub"][1]["values"])
            assert np.all((sub != 0) & (np.abs(sub) < 2.0 ** -126))
        if "hist_keys" in t["ones"][1]:  # 0.5 - k 2^-25: 0.5, then runs of 23, 22, 21, 21 ones
            keys = t["ones"][1]["hist_keys"].tolist()
            assert keys == sorted(tracecheck.key_of(v) for v in
                                  [0x3F000000, 0x3EFFFFFF, 0x3EFFFFFE, 0x3EFFFFFD, 0x3EFFFFFC])
            assert t["ones"][1]["hist_counts"].tolist() == [1] * 5
    with h5py.File(TRACES / "synthetic.h5", "r") as f2:
        assert "enc%2Flayer%251.weight" in f2["steps/00000000/tensors"]


def test_synthetic_recorded_again_is_identical(tmp_path):
    # today's recorder (background writer, chunks compressed by the recorder, histograms through
    # whichever backend this process has) writes the committed synthetic trace's content again,
    # bit for bit: every attribute, name, value and histogram of its 12 steps
    import subprocess
    import sys

    out = tmp_path / "synthetic.h5"
    subprocess.run([sys.executable, str(ROOT / "datasets" / "make_synthetic_traces.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=300)
    with h5py.File(out, "r") as f:
        again = tracecheck.digest(f)
    want = tracecheck.digest(load("synthetic")[0])
    assert len(want) == 12 and again == want


def test_lm_operands_holds_what_the_readme_says():
    """datasets/traces/lm-operands.h5 (datasets/README.md): the format checked whole (every
    histogram of the raw steps against an independent count of its values), 12 steps, every
    Linear's X, W and dY each step, raw only at 275, block statistics of the operands (and of
    nothing else) at 0, 100, 200 and 275, bfloat16, the shapes of a batch of 128 tokens through
    the model, within the size the README gives."""
    f, steps = load("lm-operands")
    assert [int(s) for s in steps] == list(range(0, 300, 25))
    assert f.attrs["fpscope_trace_minor"] == 2 and "3211862 parameters" in f.attrs["model"].decode()
    layers = [f"blocks.{i}.{m}" for i in range(4) for m in ("qkv", "proj", "fc1", "fc2")] + ["head"]
    dims = {"qkv": (256, 768), "proj": (256, 256), "fc1": (256, 1024), "fc2": (1024, 256), "head": (256, 86)}
    for link, (_, tensors) in steps.items():
        by = {name: (attrs, data) for name, attrs, data, *_ in tensors}
        assert all(a["dtype"] == "bfloat16" for a, _ in by.values())
        raw = {n for n, (_, d) in by.items() if "values" in d}
        ops = {f"{layer}:{r}" for layer in layers for r in ("input", "weight", "grad")}
        assert raw == (ops if int(link) == 275 else set()), link
        assert {n for n, (_, d) in by.items() if "bstats_keys" in d} == (ops if int(link) in (0, 100, 200, 275) else set())
        for layer in layers:
            i, o = dims[layer.split(".")[-1]]
            shapes = {r: by[f"{layer}:{r}"][0]["gemm_shape"] for r in ("input", "weight", "grad")}
            assert shapes == {"input": (128, i), "weight": (o, i), "grad": (128, o)}, (link, layer)
            assert by[f"{layer}.weight"][0]["role"] == "wgrad" and by[f"{layer}.weight"][0]["layer"] == layer
    assert (TRACES / "lm-operands.h5").stat().st_size < 16_000_000
