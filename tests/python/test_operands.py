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
    """Two steps of a 2-layer MLP on a (4, 5, 12) input, every Linear watched, raw values."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(12, 20), torch.nn.GELU(), torch.nn.Linear(20, 12))
    x = torch.randn(4, 5, 12)
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
                   "0:input": {"role": "input", "layer": "0", "gemm_shape": (20, 12)},
                   "0:weight": {"role": "weight", "layer": "0", "gemm_shape": (20, 12)},
                   "0:grad": {"role": "grad", "layer": "0", "gemm_shape": (20, 20)},
                   "2:input": {"role": "input", "layer": "2", "gemm_shape": (20, 20)},
                   "2:weight": {"role": "weight", "layer": "2", "gemm_shape": (12, 20)},
                   "2:grad": {"role": "grad", "layer": "2", "gemm_shape": (20, 12)}}


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
    ("0:input", {"gemm_shape": np.array([20], np.int64)}, "@gemm_shape has 1 dimensions, not 2"),
    ("0:input", {"gemm_shape": np.array([20, 12, 1], np.int64)}, "not 2"),
    ("0:input", {"gemm_shape": np.array([21, 12], np.int64)}, "@gemm_shape 21 x 12 does not hold the tensor's 240 elements"),
    ("0:input", {"gemm_shape": np.array([-20, -12], np.int64)}, "negative dimension"),
    ("0:input", {"gemm_shape": np.array([1 << 62, 1 << 62], np.int64)}, "does not hold"),
    ("0:input", {"gemm_shape": np.array([40, 6], np.int64)}, "columns (6) are not the last dimension of @shape"),
    ("0:input", {"gemm_shape": np.array([20.0, 12.0])}, "not a list of integers"),
    ("2:input", {"layer": np.bytes_(b"0"), "0:input": NOT_AN_OPERAND}, "cannot be one Linear's operands (X cols = W cols)"),
    ("2:grad", {"layer": np.bytes_(b"0"), "0:grad": NOT_AN_OPERAND}, "(dY cols = W rows)"),
    ("0:input", {"gemm_shape": np.array([10, 24], np.int64), "shape": np.array([10, 24], np.int64),
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
