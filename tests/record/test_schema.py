"""A recorded trace has exactly the layout of docs/trace.md: attributes, HDF5 types, filters,
chunking, names, order; and the Recorder's options do what they say."""
import math
import warnings

import h5py
import ml_dtypes
import numpy as np
import pytest
import torch
from torch import nn

import tracecheck
from fpscope_record import Recorder, escape, unescape


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real (tiny) torch training loop recorded every 2nd step, modes varying, plus odd tensors."""
    path = tmp_path_factory.mktemp("schema") / "run.h5"
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    net.register_parameter("unused", nn.Parameter(torch.zeros(2)))  # never gets a .grad
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    returned = {}
    with Recorder(path, "schema test: MLP 8-16-3, SGD lr 0.1, seed 0", every=2, mode="both", dtype=None,
                  max_steps=16) as rec:
        for step in range(10):
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            returned[step] = rec.record(step, net.named_parameters(), loss=loss, lr=torch.tensor(0.1),
                                        mode="hist" if step == 4 else "raw" if step == 6 else None)
            opt.step()
        extra = {
            "a/b%c": torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2,
            "half": torch.tensor([1.0, -2.5, 65504.0, 6e-8, 0.0], dtype=torch.float16),
            "bf16": torch.tensor([[1.0, 3e38], [-1e-40, float("inf")]], dtype=torch.bfloat16),
            "scalar": torch.tensor(0.5),
            "empty": torch.zeros(0, 4),
            "big": torch.linspace(-1, 1, (1 << 20) + 3),
            "e4m3": np.array([0.5, -448, 0.001953125, np.nan], dtype=np.float32).astype(ml_dtypes.float8_e4m3fn),
            "e5m2": np.array([1.5, 57344, -0.0], dtype=np.float32).astype(ml_dtypes.float8_e5m2),
        }
        returned[100] = rec.record(100, extra, loss=None, lr=None, loss_scale=2.0 ** 16, mode="both")
    with h5py.File(path, "r") as f:
        yield path, returned, tracecheck.check_trace(f)


def test_steps_every_and_return(trained):
    path, returned, steps = trained
    assert returned == {0: True, 1: False, 2: True, 3: False, 4: True, 5: False, 6: True, 7: False, 8: True,
                        9: False, 100: True}
    assert list(steps) == ["00000000", "00000002", "00000004", "00000006", "00000008", "00000100"]


def test_root_attributes(trained):
    path = trained[0]
    with h5py.File(path, "r") as f:
        # a single process: minor version 1, and none of its rank attributes
        assert set(f.attrs) == {"fpscope_trace_version", "fpscope_trace_minor", "producer", "model", "created"}
        assert f.attrs.get_id("fpscope_trace_minor").dtype == np.dtype("<i4") and f.attrs["fpscope_trace_minor"] == 2
        v = f.attrs.get_id("fpscope_trace_version")
        assert v.dtype == np.dtype("<i4") and v.shape == () and f.attrs["fpscope_trace_version"] == 1
        for a in ("producer", "model", "created"):
            t = f.attrs.get_id(a).get_type()
            assert isinstance(t, h5py.h5t.TypeStringID) and t.get_cset() == h5py.h5t.CSET_UTF8
        assert f.attrs["producer"].decode().startswith(f"fpscope_record 2 (torch {torch.__version__}, ")
        assert f.attrs["model"].decode() == "schema test: MLP 8-16-3, SGD lr 0.1, seed 0"
        assert list(f) == ["steps"]


def test_step_attributes(trained):
    _, _, steps = trained
    attrs, tensors = steps["00000004"]
    assert attrs["step"] == 4 and attrs["lr"] == np.float64(np.float32(0.1)) and attrs["loss_scale"] == 1.0
    assert 0 < attrs["loss"] < 2
    attrs, _ = steps["00000100"]
    assert math.isnan(attrs["loss"]) and math.isnan(attrs["lr"]) and attrs["loss_scale"] == 65536.0


def test_tensor_names_order_and_skipped(trained):
    _, _, steps = trained
    names = [n for n, _, _ in steps["00000000"][1]]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]  # model order; "unused" has no grad
    names = [n for n, _, _ in steps["00000100"][1]]
    assert names == ["a/b%c", "half", "bf16", "scalar", "empty", "big", "e4m3", "e5m2"]  # recording order
    with h5py.File(trained[0], "r") as f:
        assert list(f["steps/00000100/tensors"])[0] == "a%2Fb%25c"


def test_escape():
    for name in ["plain", "a/b", "%", "%2F", "/%25/", "x%/y"]:
        assert unescape(escape(name)) == name and "/" not in escape(name)
    assert escape("a%2F/b") == "a%252F%2Fb"


def test_modes(trained):
    _, _, steps = trained
    members = {link: {tuple(sorted(d)) for _, _, d in t} for link, (_, t) in steps.items()}
    both = ("hist_counts", "hist_keys", "values")
    assert members["00000000"] == {both}
    assert members["00000004"] == {("hist_counts", "hist_keys")}
    assert members["00000006"] == {("values",)}


def test_tensor_attributes_and_types(trained):
    path, _, steps = trained
    t = {n: (a, d) for n, a, d in steps["00000100"][1]}
    assert t["a/b%c"][0] == {"dtype": "float32", "shape": (2, 3), "count": 6, "zeros": 1, "infs": 0, "nans": 0,
                             "amax": 3.0}
    assert t["half"][0]["dtype"] == "float16" and t["half"][0]["amax"] == 65504.0 and t["half"][0]["zeros"] == 1
    assert t["bf16"][0]["dtype"] == "bfloat16" and t["bf16"][0]["infs"] == 1
    assert t["bf16"][0]["amax"] == float(torch.tensor(3e38, dtype=torch.bfloat16))
    assert t["scalar"][0]["shape"] == () and t["scalar"][0]["count"] == 1
    assert t["empty"][0]["shape"] == (0, 4) and t["empty"][0]["count"] == 0 and t["empty"][0]["amax"] == 0.0
    assert t["e4m3"][0]["nans"] == 1 and t["e4m3"][0]["amax"] == 448.0
    assert t["e5m2"][0]["zeros"] == 1 and t["e5m2"][0]["amax"] == 57344.0
    with h5py.File(path, "r") as f:
        g = f["steps/00000100/tensors"]
        for name in g:
            tg = g[name]
            for a, want in [("count", "<u8"), ("zeros", "<u8"), ("infs", "<u8"), ("nans", "<u8"), ("amax", "<f8")]:
                assert tg.attrs.get_id(a).dtype == np.dtype(want) and tg.attrs.get_id(a).shape == ()
            assert tg.attrs.get_id("shape").dtype == np.dtype("<i8")
        # float32: an IEEE little-endian float32 dataset; the rest raw bits, unsigned
        v = g["a%2Fb%25c/values"]
        assert v.dtype == np.dtype("<f4") and isinstance(v.id.get_type(), h5py.h5t.TypeFloatID)
        assert v.id.get_type().get_order() == h5py.h5t.ORDER_LE and v.id.get_type().get_size() == 4
        np.testing.assert_array_equal(v[()], np.arange(6, dtype=np.float32) - 2)
        def bits(values, kind, raw):
            return np.array(values, np.float32).astype(kind).view(raw)

        for name, dtype, raw, want in [
                ("half", "float16", "<u2", bits([1.0, -2.5, 65504.0, 6e-8, 0.0], np.float16, np.uint16)),
                ("bf16", "bfloat16", "<u2", bits([1.0, 3e38, -1e-40, np.inf], ml_dtypes.bfloat16, np.uint16)),
                ("e4m3", "float8_e4m3fn", "|u1", np.array([0x30, 0xFE, 0x01, 0x7F], np.uint8)),
                ("e5m2", "float8_e5m2", "|u1", np.array([0x3E, 0x7B, 0x80], np.uint8))]:
            d = g[name]["values"]
            t = d.id.get_type()
            assert d.dtype == np.dtype(raw) and isinstance(t, h5py.h5t.TypeIntegerID), name
            assert t.get_sign() == h5py.h5t.SGN_NONE, name
            assert g[name].attrs["dtype"].decode() == dtype
            np.testing.assert_array_equal(d[()], want, err_msg=name)
        # hist datasets
        assert g["half/hist_keys"].dtype == np.dtype("<u4") and g["half/hist_counts"].dtype == np.dtype("<u8")


def test_filters_and_chunking(trained):
    with h5py.File(trained[0], "r") as f:
        g = f["steps/00000100/tensors"]
        big = g["big/values"]
        assert big.shape == ((1 << 20) + 3,) and big.chunks == (1 << 20,)
        assert big.compression == "gzip" and big.compression_opts == 4 and big.shuffle
        plist = big.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        assert filters == [h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_DEFLATE]  # shuffle first, then deflate
        small = g["half/values"]
        assert small.chunks == (5,) and small.compression == "gzip" and small.shuffle
        empty = g["empty/values"]
        assert empty.shape == (0,) and empty.chunks is None and empty.compression is None and not empty.shuffle
        assert empty.id.get_create_plist().get_layout() != h5py.h5d.CHUNKED
        assert g["empty/hist_keys"].shape == (0,) and g["empty/hist_counts"].shape == (0,)
        np.testing.assert_array_equal(big[()], torch.linspace(-1, 1, (1 << 20) + 3).numpy())


def test_histograms_match_values(trained):
    # check_trace (in the fixture) already compared every histogram with an independent count of
    # its values; here one by hand: "a/b%c" = -2, -1, 0, 1, 2, 3
    _, _, steps = trained
    d = dict((n, d) for n, _, d in steps["00000100"][1])["a/b%c"]
    keys = [tracecheck.key_of(int(v)) for v in np.array([-2, -1, 0, 1, 2, 3], np.float32).view(np.uint32)]
    want = {}
    for k in keys:
        want[k] = want.get(k, 0) + 1
    assert dict(zip(d["hist_keys"].tolist(), d["hist_counts"].tolist())) == want
    assert tracecheck.key_of(0x40400000) == (0x80 << 7) | (1 << 2)  # 3.0 = 1.1b x 2^1: run of 1, then 0 0


def test_dtype_conversion(tmp_path):
    g = torch.tensor([1.0, 1.0 + 2.0 ** -9, 1e-8, 70000.0])
    for dtype, stored in [("float16", "<u2"), ("bfloat16", "<u2"), ("float32", "<f4")]:
        path = tmp_path / f"{dtype}.h5"
        with Recorder(path, "conversion", dtype=dtype, max_steps=1) as rec:
            rec.record(0, {"g": g})
        with h5py.File(path, "r") as f:
            t = f["steps/00000000/tensors/g"]
            assert t.attrs["dtype"].decode() == dtype and t["values"].dtype == np.dtype(stored)
            want = g.to(getattr(torch, dtype)).float().numpy()
            np.testing.assert_array_equal(tracecheck.widen(dtype, t["values"][()]), want)
    path = tmp_path / "keep.h5"
    with Recorder(path, "keep", dtype=None, max_steps=1) as rec:
        rec.record(0, {"h": g.half(), "b": g.bfloat16(), "f": g})
    with h5py.File(path, "r") as f:
        assert [f[f"steps/00000000/tensors/{n}"].attrs["dtype"].decode() for n in "hbf"] == \
            ["float16", "bfloat16", "float32"]


def test_errors_and_max_steps(tmp_path):
    path = tmp_path / "e.h5"
    with Recorder(path, "errors", max_steps=2) as rec:
        rec.record(0, {"a": np.zeros(2, np.float32)})
        with pytest.raises(ValueError, match="already recorded"):
            rec.record(0, {"a": np.zeros(2, np.float32)})
        with pytest.raises(ValueError, match="duplicate"):
            rec.record(1, [("a", np.zeros(2, np.float32)), ("a", np.ones(2, np.float32))])
        with pytest.raises(TypeError):
            rec.record(1, {"a": np.zeros(2, np.int32)})
        with pytest.raises(ValueError, match="mode"):
            rec.record(1, {"a": np.zeros(2, np.float32)}, mode="values")
        rec.record(1, {"a": np.zeros(2, np.float32)})
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            rec.record(2, {"a": np.zeros(2, np.float32)})
        assert any("max_steps" in str(x.message) for x in w)
    with pytest.raises(OSError):
        Recorder(path, "again", overwrite=False)
    with h5py.File(path, "r") as f:
        assert list(f["steps"]) == ["00000000", "00000001", "00000002"]
        tracecheck.check_trace(f)
    with pytest.raises(ValueError):
        Recorder(tmp_path / "x.h5", "bad", every=0)


def test_many_chunks_read_back(tmp_path, monkeypatch):
    """A tensor of thousands of chunks reads back. Under chunk-index B-trees of rank 1 (the
    recorder's first tuning) libhdf5 1.10.8 wrote datasets of more than 256 chunks that it could
    not read; 16-value chunks stand in for 2^20-value ones (3000 chunks: 3e9 values)."""
    import ctypes

    import fpscope_record

    lib = fpscope_record._hdf5_library()
    assert lib is not None, "the recorder's size tunings (ctypes into libhdf5) are not applied here"
    monkeypatch.setattr(fpscope_record, "CHUNK", 16)
    x = np.arange(16 * 3000, dtype=np.float32) - 7.5
    path = tmp_path / "many.h5"
    with Recorder(path, "many chunks", mode="raw") as rec:
        rec.record(0, {"big": x})
    with h5py.File(path, "r") as f:
        k = ctypes.c_uint()
        assert lib.H5Pget_istore_k(ctypes.c_int64(f.id.get_create_plist().id), ctypes.byref(k)) >= 0
        assert k.value == 2
        d = f["steps/00000000/tensors/big/values"]
        assert d.chunks == (16,)
        np.testing.assert_array_equal(d[...], x)


def test_steps_must_increase(tmp_path):
    """The reader refuses a trace whose steps go back (docs/trace.md): the recorder refuses to
    write one, and the steps before stay readable."""
    path = tmp_path / "order.h5"
    with Recorder(path, "order") as rec:
        rec.record(3, {"a": np.zeros(2, np.float32)})
        with pytest.raises(ValueError, match="comes after step 3.*must increase"):
            rec.record(2, {"a": np.zeros(2, np.float32)})
        rec.record(4, {"a": np.zeros(2, np.float32)})
    with h5py.File(path, "r") as f:
        assert sorted(f["steps"]) == ["00000003", "00000004"]
