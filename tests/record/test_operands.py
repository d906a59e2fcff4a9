"""GEMM operand recording (Recorder.watch; docs/trace.md, "GEMM operands"): on a real PyTorch
model, the recorded X, W and dY of each watched nn.Linear are, bit for bit, the tensors its
GEMMs multiplied, computed again here by hand (a forward of the layers one by one, the output
gradients by torch.autograd.grad); roles, layers and 2-D shapes; which steps; the options."""
import math
import os
import warnings

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import tracecheck
from fpscope_record import Recorder


class Net(nn.Module):
    """Linear layers inside blocks, a 3-D input (batch x seq x features), a shared nonlinearity,
    an in-place op after a Linear (the dY hook must not disturb it), and a layer not watched."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(6, 12)
        self.blocks = nn.ModuleList(nn.ModuleDict({"fc1": nn.Linear(12, 20), "fc2": nn.Linear(20, 12)}) for _ in range(2))
        self.head = nn.Linear(12, 5, bias=False)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b["fc2"](torch.relu_(b["fc1"](h)))  # relu_: in place on the Linear's output
        return self.head(torch.tanh(h))


def make(seed=0):
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    net = Net()
    x, y = torch.randn(3, 7, 6), torch.randint(0, 5, (3 * 7,))
    return net, x, y


def loss_of(out, y):
    return nn.functional.cross_entropy(out.reshape(-1, 5), y)


def by_hand(net, x, y, names):
    """{layer: (X, W, dY)} of one step computed again, through no hook: the forward of a copy of
    the model layer by layer (relu out of place: the same values), the output gradients by
    torch.autograd.grad."""
    twin = Net()
    twin.load_state_dict(net.state_dict())
    seen = {}

    def lin(name, m, v):
        o = m(v)
        seen[name] = (v, o)
        return o

    h = lin("inp", twin.inp, x)
    for i, b in enumerate(twin.blocks):
        u = torch.relu(lin(f"blocks.{i}.fc1", b["fc1"], h))
        h = h + lin(f"blocks.{i}.fc2", b["fc2"], u)
    grads = torch.autograd.grad(loss_of(lin("head", twin.head, torch.tanh(h)), y), [seen[n][1] for n in names])
    mods = dict(twin.named_modules())
    return {n: (seen[n][0].detach().reshape(-1, seen[n][0].shape[-1]).numpy().copy(),
                mods[n].weight.detach().numpy().copy(), g.reshape(-1, g.shape[-1]).numpy().copy())
            for n, g in zip(names, grads)}


def read_values(f, link, name):
    g = f["steps"][link]["tensors"][name]
    return np.asarray(g["values"]), {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}


WATCHED = ["inp", "blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2", "head"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """6 SGD steps, every nn.Linear watched every 2nd step, gradients recorded every step."""
    path = tmp_path_factory.mktemp("operands") / "run.h5"
    net, x, y = make()
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    expected, returned = {}, {}
    with Recorder(path, "operands test", every=1, mode="both") as rec:
        handle = rec.watch(net, layers="*", every=2)
        for step in range(6):
            if step % 2 == 0:
                expected[step] = by_hand(net, x, y, WATCHED)
            with torch.no_grad():
                net(x)  # an evaluation forward: not captured
            loss = loss_of(net(x), y)
            opt.zero_grad()
            loss.backward()
            returned[step] = rec.record(step, net.named_parameters(), loss=loss)
            opt.step()
        handle.remove()
    with h5py.File(path, "r") as f:
        checked = tracecheck.check_trace(f)
    return path, expected, returned, checked


def test_operands_are_exactly_what_the_gemms_multiplied(run):
    path, expected, _, _ = run
    n = 0
    with h5py.File(path, "r") as f:
        for step, layers in expected.items():
            for layer, (x, w, dy) in layers.items():
                for role, want in (("input", x), ("weight", w), ("grad", dy)):
                    got, attrs = read_values(f, f"{step:08d}", f"{layer}:{role}")
                    assert attrs["role"] == role and attrs["layer"] == layer
                    assert tuple(attrs["gemm_shape"]) == want.shape
                    assert got.view(np.uint32).tolist() == want.reshape(-1).view(np.uint32).tolist(), (step, layer, role)
                    n += 1
    assert n == 3 * 6 * 3  # steps 0, 2, 4 x 6 layers x 3 roles


def test_shapes_roles_and_the_independent_format_check(run):
    path, _, _, checked = run
    step0 = {name: attrs for name, attrs, *_ in checked["00000000"][1]}
    assert step0["blocks.0.fc1:input"]["gemm_shape"] == (21, 12) and step0["blocks.0.fc1:input"]["shape"] == (3, 7, 12)
    assert step0["blocks.0.fc1:weight"]["gemm_shape"] == (20, 12)
    assert step0["blocks.0.fc1:grad"]["gemm_shape"] == (21, 20)
    # the parameter gradient of a watched layer is dW, role wgrad; its bias is not a GEMM operand
    assert step0["blocks.0.fc1.weight"]["role"] == "wgrad" and step0["blocks.0.fc1.weight"]["gemm_shape"] == (20, 12)
    assert "role" not in step0["blocks.0.fc1.bias"]
    with h5py.File(path, "r") as f:
        assert f.attrs["fpscope_trace_minor"] == 2


def test_operands_on_every_nth_step_gradients_on_all(run):
    path, _, returned, checked = run
    assert all(returned.values()) and sorted(checked) == [f"{s:08d}" for s in range(6)]
    for link, (_, tensors) in checked.items():
        roles = sorted({a.get("role") for _, a, *_ in tensors} - {None})
        assert roles == (["grad", "input", "weight", "wgrad"] if int(link) % 2 == 0 else ["wgrad"]), link
        # the no_grad forward before each training forward was not what got captured
        assert sum(1 for name, *_ in tensors if name.endswith(":input")) == (6 if int(link) % 2 == 0 else 0)


def test_cxx_reader_exposes_the_operands(run):
    fpscope = pytest.importorskip("fpscope") if not os.environ.get("FPSCOPE_REQUIRE_MODULE") else __import__("fpscope")
    t = fpscope.Trace(str(run[0]))
    ops = {x["name"]: x["operand"] for x in t.step(2)["tensors"]}
    assert ops["head:grad"] == {"role": "grad", "layer": "head", "gemm_shape": (21, 5)}
    assert ops["head.weight"] == {"role": "wgrad", "layer": "head", "gemm_shape": (5, 12)}
    assert ops["inp.bias"] is None
    x = t.values(2, "blocks.1.fc2:input")
    assert x.shape == (3, 7, 20)


def test_layer_patterns_modes_and_budget(tmp_path):
    net, x, y = make()
    path = tmp_path / "p.h5"
    with Recorder(path, "m", mode="hist", background=False, raw_budget=4 * 21 * 20 + 4 * 20 * 12) as rec:
        rec.watch(net, layers=["blocks.*.fc1", "nothing.*"], every=1, mode="raw")
        for step in range(2):
            loss = loss_of(net(x), y)
            net.zero_grad()
            loss.backward()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rec.record(step, net.named_parameters())
            # step 0's raw operands of blocks.0.fc1 (X 21x12, W 20x12, dY 21x20) exceed the budget
            assert any("raw_budget" in str(c.message) for c in caught) == (step == 0)
    with h5py.File(path, "r") as f:
        names = list(f["steps/00000000/tensors"])
        assert [n for n in names if ":" in n] == [f"blocks.{i}.fc1:{r}" for i in (0, 1) for r in ("input", "weight", "grad")]
        # over the budget: histograms only, the operands too
        assert all("values" not in f["steps/00000000/tensors"][n] for n in names)


def test_operand_mode_is_the_operands_own(tmp_path):
    net, x, y = make()
    path = tmp_path / "m.h5"
    with Recorder(path, "m", mode="hist", background=False) as rec:
        rec.watch(net, layers="head")
        loss = loss_of(net(x), y)
        loss.backward()
        rec.record(0, net.named_parameters(), operand_mode="raw")
    with h5py.File(path, "r") as f:
        t = f["steps/00000000/tensors"]
        assert set(t["head:input"]) == {"values"} and set(t["head.weight"]) == {"hist_keys", "hist_counts"}
    # watch()'s mode is the operands' default; record()'s operand_mode overrides it for a step
    with Recorder(path, "m", mode="hist", background=False) as rec:
        rec.watch(net, layers="head", mode="both")
        for step, om in ((0, None), (1, "raw")):
            net.zero_grad()
            loss_of(net(x), y).backward()
            rec.record(step, net.named_parameters(), operand_mode=om)
    with h5py.File(path, "r") as f:
        assert set(f["steps/00000000/tensors/head:grad"]) == {"values", "hist_keys", "hist_counts"}
        assert set(f["steps/00000001/tensors/head:grad"]) == {"values"}


def test_begin_step_and_a_step_record_does_not_expect(tmp_path):
    net, x, y = make()
    path = tmp_path / "b.h5"
    with Recorder(path, "m", background=False) as rec:
        rec.watch(net, layers="head", every=5)
        for step in (5, 7, 10):
            rec.begin_step(step)
            loss_of(net(x), y).backward()
            rec.record(step, net.named_parameters())
        # without begin_step, the hooks expect step 11 after 10: a record(15) finds nothing captured
        loss_of(net(x), y).backward()
        rec.record(15, net.named_parameters())
        # ... and operands captured for a predicted step record() does not get are dropped, with a warning
        rec.begin_step(20)
        loss_of(net(x), y).backward()
        with pytest.warns(UserWarning, match="dropped"):
            rec.record(21, net.named_parameters())
    with h5py.File(path, "r") as f:
        got = {s: "head:input" in f["steps"][s]["tensors"] for s in f["steps"]}
    assert got == {"00000005": True, "00000007": False, "00000010": True, "00000015": False, "00000021": False}


def test_watch_errors(tmp_path):
    net, _, _ = make()
    with Recorder(tmp_path / "e.h5", "m", background=False) as rec:
        with pytest.raises(ValueError, match="no nn.Linear"):
            rec.watch(net, layers="conv*")
        for bad in (0, -1, 1.5, True):
            with pytest.raises(ValueError, match="every"):
                rec.watch(net, every=bad)
        with pytest.raises(ValueError, match="mode"):
            rec.watch(net, mode="values")
        with pytest.raises(ValueError, match="layers"):
            rec.watch(net, layers=[1])
        with pytest.raises(TypeError, match="Module"):
            rec.watch(object())
        h = rec.watch(net, layers="head")
        with pytest.raises(ValueError, match="already watched"):
            rec.watch(net, layers="*")
        h.remove()
        rec.watch(net, layers="*")  # removed: free again
        with pytest.raises(ValueError, match="operand_mode"):
            rec.record(0, {"a": np.ones(2, np.float32)}, operand_mode="x")


def test_background_writer_copies_before_the_optimizer_moves_on(tmp_path):
    """The operands are copied in the hooks: an optimizer step (in-place on W) and the next
    forward right after record() change nothing recorded."""
    net, x, y = make()
    path = tmp_path / "bg.h5"
    want = by_hand(net, x, y, ["head"])["head"]
    opt = torch.optim.SGD(net.parameters(), lr=10.0)
    with Recorder(path, "m", max_pending=1) as rec:
        rec.watch(net, layers="head")
        loss_of(net(x), y).backward()
        rec.record(0, net.named_parameters())
        opt.step()
        with torch.no_grad():
            net.head.weight.mul_(-3)
    with h5py.File(path, "r") as f:
        for role, v in zip(("input", "weight", "grad"), want):
            got, _ = read_values(f, "00000000", f"head:{role}")
            assert np.array_equal(got, v.reshape(-1)), role
        assert math.isfinite(float(f["steps/00000000"].attrs["loss"])) is False  # loss not given: NaN


def test_closing_the_recorder_takes_the_hooks_off(tmp_path):
    net, x, y = make()
    hooks = lambda: sum(len(m._forward_hooks) for m in net.modules())  # noqa: E731
    with Recorder(tmp_path / "c.h5", "m", background=False) as rec:
        rec.watch(net, layers="blocks.*")
        assert hooks() == 4
    assert hooks() == 0
    rec2 = Recorder(tmp_path / "d.h5", "m", background=False)
    rec2.watch(net, layers="head")
    del rec2  # dropped unclosed: its finalizer closes the file; a hook left behind must not fail
    loss_of(net(x), y).backward()


class ConvNet(nn.Module):
    """Convolutions recorded as their im2col GEMMs (stride, padding, dilation), a depthwise one
    (groups > 1: left out, with a warning), then a Linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.c2 = nn.Conv2d(4, 2, 3, stride=2, dilation=2, padding=1, bias=False)
        self.fc = nn.Linear(2 * 3 * 3, 5)

    def forward(self, x):
        h = torch.relu(self.c1(x))
        h = self.c2(self.dw(h))
        return self.fc(h.flatten(1))


def im2col(x, k, stride, pad, dil):
    """The rows (n, oh, ow) x columns (c, kh, kw) of a convolution's GEMM, by slicing in NumPy."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    span = dil * (k - 1) + 1
    oh, ow = (h + 2 * pad - span) // stride + 1, (w + 2 * pad - span) // stride + 1
    rows = [xp[i, :, a * stride : a * stride + span : dil, b * stride : b * stride + span : dil].reshape(-1)
            for i in range(n) for a in range(oh) for b in range(ow)]
    return np.stack(rows)


def test_conv2d_operands_are_its_im2col_gemm(tmp_path):
    torch.manual_seed(3)
    torch.set_num_threads(1)
    net, x, y = ConvNet(), torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2,))
    twin = ConvNet()
    twin.load_state_dict(net.state_dict())
    # by hand, through no hook: each convolution's input and output gradient
    a1 = twin.c1(x)
    h1 = torch.relu(a1)
    h2 = twin.dw(h1)
    a2 = twin.c2(h2)
    g1, g2 = torch.autograd.grad(nn.functional.cross_entropy(twin.fc(a2.flatten(1)), y), [a1, a2])
    path = tmp_path / "conv.h5"
    with Recorder(path, "conv operands", mode="both") as rec:
        with pytest.warns(UserWarning, match=r"leaves out the Conv2d modules \['dw'\]"):
            rec.watch(net, layers="*")
        nn.functional.cross_entropy(net(x), y).backward()
        rec.record(0, net.named_parameters())
    want = {"c1": (x, twin.c1, g1, 3, 1, 1, 1), "c2": (h2, twin.c2, g2, 3, 2, 1, 2)}
    with h5py.File(path, "r") as f:
        checked = {name: attrs for name, attrs, *_ in tracecheck.check_trace(f)["00000000"][1]}
        for layer, (inp, mod, g, k, stride, pad, dil) in want.items():
            cols = im2col(inp.detach().numpy(), k, stride, pad, dil)
            wm = mod.weight.detach().numpy().reshape(mod.out_channels, -1)
            dy = g.permute(0, 2, 3, 1).reshape(-1, mod.out_channels).numpy()
            # the rows and columns are the convolution's GEMM: X W^T is its output (no bias), in float64
            out = (mod(inp) - (0 if mod.bias is None else mod.bias[:, None, None])).detach()
            assert np.allclose(cols.astype(np.float64) @ wm.T.astype(np.float64),
                               out.permute(0, 2, 3, 1).reshape(-1, mod.out_channels).numpy(), atol=1e-5)
            for role, exp in (("input", cols), ("weight", wm), ("grad", dy)):
                got, attrs = read_values(f, "00000000", f"{layer}:{role}")
                assert attrs["role"] == role and tuple(attrs["gemm_shape"]) == exp.shape, (layer, role)
                assert got.view(np.uint32).tolist() == exp.astype(np.float32).reshape(-1).view(np.uint32).tolist(), (layer, role)
        assert "dw:input" not in checked and "role" not in checked["c1.weight"]  # a 4-D dW: not tagged wgrad
        assert checked["fc.weight"]["role"] == "wgrad" and checked["fc:grad"]["gemm_shape"] == (2, 5)
