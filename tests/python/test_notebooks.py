"""The teaching notebooks (notebooks/NN_*.py, percent format) execute headless, draw their
figures, and every number they print that is checked here equals what the fpscope CLI (an
independent path through the same emulator) or the module computes."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fpscope

ROOT = Path(os.environ.get("FPSCOPE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(ROOT / "tools"))
import notebooks  # noqa: E402  (tools/notebooks.py)

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
BIN = os.environ["FPSCOPE_BIN"]
GRADS = ROOT / "datasets" / "lm-grads" / "step0300.npy"
# The fewest figures each notebook must draw.
FIGURES = {"01_formats": 4, "02_underflow": 4, "03_loss_scaling": 1, "04_fp8_scaling": 1, "05_misconceptions": 3,
           "06_nvfp4_training": 1,
           "07_tensor_cores": 3}


def cli_json(*args):
    return json.loads(subprocess.run([BIN, *map(str, args), "--json"], capture_output=True, text=True,
                                     check=True).stdout)


def cast_value(text, fmt):
    v = cli_json("cast", text, "--to", fmt)[0]
    return v["value"] if v["value"] is not None else v["value_exact"]


def hist_count(fmt, scale, cls):
    (r,) = cli_json("hist", GRADS, "-f", fmt, "-s", scale, "--no-picture")["results"]
    return r[cls]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook, executed once: stem -> (notebook, printed text)."""
    notebooks.environment(Path(os.environ["FPSCOPE_BUILD_DIR"]))
    out = {}
    for src in notebooks.sources():
        nb = notebooks.execute(notebooks.to_notebook(src))
        text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                       if o.output_type == "stream")
        out[src.stem] = (nb, text)
    return out


def printed(text, label):
    """The value printed as 'label = value'."""
    m = re.search(rf"^{re.escape(label)} = (.+)$", text, re.M)
    assert m, f"the notebook printed no '{label} = ...'"
    return m.group(1).strip()


def number(s):
    return float(s)


def test_every_notebook_is_checked(executed):
    assert set(executed) == set(FIGURES)


@pytest.mark.parametrize("stem", sorted(FIGURES))
def test_runs_and_draws(executed, stem):
    nb, _ = executed[stem]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= FIGURES[stem]


def test_formats_numbers(executed):
    _, text = executed["01_formats"]
    rows = {r["name"]: r for r in cli_json("formats")}
    for name in ["fp16", "bf16", "e4m3", "e5m2"]:
        assert number(printed(text, f"{name} max")) == rows[name]["max_finite"]
        assert number(printed(text, f"{name} min subnormal")) == rows[name]["min_subnormal"]
    ml = pytest.importorskip("ml_dtypes")
    for name, dt in [("e4m3", ml.float8_e4m3fn), ("e5m2", ml.float8_e5m2), ("e2m1", ml.float4_e2m1fn)]:
        v = np.arange(16 if name == "e2m1" else 256, dtype=np.uint8).view(dt).astype(np.float64)
        v = np.unique(v[np.isfinite(v) & (v > 0)])
        assert int(printed(text, f"{name} positive finite values")) == v.size
    assert number(printed(text, "e4m3 spacing below max")) == 448 - 416


def test_underflow_numbers(executed):
    _, text = executed["02_underflow"]
    assert int(printed(text, "fp16 underflow at scale 1")) == hist_count("fp16", 1, "underflow")
    assert int(printed(text, "fp16 subnormal at scale 1")) == hist_count("fp16", 1, "subnormal")
    assert int(printed(text, "bf16 underflow at scale 2^0")) == hist_count("bf16", 1, "underflow")
    assert int(printed(text, "e4m3 underflow at scale 2^10")) == hist_count("e4m3", 1024, "underflow")
    assert int(printed(text, "e5m2 underflow at scale 2^10")) == hist_count("e5m2", 1024, "underflow")
    # The notebook's recommendations are hist's rows (the CLI's, another front end).
    recs = cli_json("hist", GRADS, "-f", "fp16,bf16,e4m3,e5m2", "--errors", "none", "-q")["recommendations"]
    assert len(recs) == 4
    for r in recs:
        assert printed(text, f"{r['format']} fewest lost at scale") == f"2^{r['min_loss']['scale_log2']}"
        assert printed(text, f"{r['format']} GradScaler-style scale") == f"2^{r['gradscaler']['scale_log2']}"


def replay(path, policy):
    return json.loads(subprocess.run([BIN, "replay", path, "--policy", policy, "--json", "--quiet"],
                                     capture_output=True, text=True, check=True).stdout)


def trace_of(text):
    return printed(text.replace("trace: ", "trace = "), "trace")


def test_loss_scaling_numbers(executed):
    _, text = executed["03_loss_scaling"]
    trace = trace_of(text)
    for p in ["static:1", "torch", "deepspeed"]:
        sm = replay(trace, p)["summary"]
        assert printed(text, f"{p} skipped steps") == str(sm["skipped"])
        assert int(printed(text, f"{p} underflow")) == sm["underflow"]
        assert number(printed(text, f"{p} final scale")) == sm["scale_final"]


def test_fp8_scaling_numbers(executed):
    _, text = executed["04_fp8_scaling"]
    trace = trace_of(text)
    for p in ["te-delayed", "te-current", "mx", "mx:rounding=rceil"]:
        sm = replay(trace, p)["summary"]
        assert int(printed(text, f"{p} underflow")) == sm["underflow"]
        assert int(printed(text, f"{p} overflow")) == sm["overflow"]
    r = replay(trace, "te-delayed")
    assert printed(text, "te-delayed step 0 underflow fraction") == \
        f"{r['steps'][0]['fraction_of_nonzero_finite']['underflow']:.4f}"


def test_misconception_numbers(executed):
    _, text = executed["05_misconceptions"]
    assert number(printed(text, "1.2e-7 in fp16")) == cast_value("1.2e-7", "fp16") == 2.0 ** -23
    assert int(printed(text, "1.2e-7 in fp16 bits"), 16) == cli_json("cast", "1.2e-7", "--to", "fp16")[0]["bits"]
    assert number(printed(text, "65519.99 in fp16")) == cast_value("65519.99", "fp16") == 65504
    assert printed(text, "65520 in fp16") == "inf" and cast_value("65520", "fp16") == "inf"
    for e in (-126, -130, -133, -134):
        assert number(printed(text, f"2^{e} in bf16")) == cast_value(f"0x1p{e}", "bf16")
    assert number(printed(text, "2^-134 in bf16")) == 0.0
    # The GradScaler answer: replay the notebook's trace with the CLI itself.
    r = replay(trace_of(text), "torch")
    skipped = [s["step"] for s in r["steps"] if s["skipped"]]
    assert printed(text, "torch skipped steps") == str(skipped) == "[300]"
    assert int(printed(text, "torch scale changes")) == r["summary"]["scale_changes"] == 2
    assert "scale 32768 -> 65536 at step 2301" in text  # 2000 clean steps after the skip


def test_nvfp4_training_numbers(executed):
    _, text = executed["06_nvfp4_training"]
    path = printed(text, "operand")
    (op,) = cli_json("recipes", path, "-r", "nvfp4", "--gemm", "fprop")["operands"]
    r = op["results"][0]
    assert int(printed(text, "nvfp4 input underflow")) == r["counts"]["underflow"]
    assert int(printed(text, "nvfp4 input subnormal")) == r["counts"]["subnormal"] > 0
    assert printed(text, "nvfp4 input SQNR dB") == f"{r['sqnr_db']:.2f}"
    assert printed(text, "nvfp4 input blocks with a vanished element") == f"{r['any_vanish_blocks']} of {r['blocks']}"
    # Quantized training still trains, and ends behind float32.
    final = {name: float(re.search(rf"^{re.escape(name)}: final loss \S+ of last 20 steps\) ([0-9.]+)", text, re.M).group(1))
             for name in ("float32", "nvfp4 (TE)", "mxfp8")}
    assert final["nvfp4 (TE)"] > final["float32"] and final["nvfp4 (TE)"] < 1.0


def test_html_render(executed):
    html = notebooks.render_html(executed["01_formats"][0])
    assert "<img" in html or "image/png" in html


def test_tensor_cores_numbers(executed):
    _, text = executed["07_tensor_cores"]
    d = printed(text.replace("fp8 inputs: ", "fp8 inputs = "), "fp8 inputs")
    a, b = Path(d) / "a8.npy", Path(d) / "b8.npy"
    for name, args in [("hopper", ["--arch", "hopper", "--inst", "m64n64k32.f32.e4m3.e4m3"]),
                       ("hopper promoted", ["--arch", "hopper", "--inst", "m64n64k32.f32.e4m3.e4m3", "--promote", "128"]),
                       ("blackwell", ["--arch", "blackwell", "--inst", "m128n64k32.kind::f8f6f4.f32.e4m3.e4m3"])]:
        (run,) = cli_json("gemm", a, b, *args)["runs"]
        assert run["checked"] == 4096  # every result, against the exact product
        assert printed(text, f"{name} fp8 max rel error") == f"{run['max_abs_rel_error']:.3g}"
        # the sweep's last depth is the whole product: the same error
        assert printed(text, f"{name} sweep K=4096 max rel error") == f"{run['max_abs_rel_error']:.3g}"
    # the generations differ on the one dot: truncation below F bits
    assert printed(text, "volta one dot") != printed(text, "hopper one dot")
