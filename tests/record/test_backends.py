"""Every way the recorder computes a histogram and the statistics gives the same bits: the C++
library through the fpscope module, torch integer ops (here on CPU tensors; on a GPU when one
is lent), and NumPy; each against the independent per-element count of tracecheck.

The module path needs the built module on PYTHONPATH (ctest sets it and FPSCOPE_REQUIRE_MODULE=1,
so that a missing module fails rather than skips)."""
import os
import struct
import subprocess
import sys

import h5py
import ml_dtypes
import numpy as np
import pytest
import torch

import fpscope_record as fr
import tracecheck
from conftest import HERE, ROOT
from test_hist import edge_values


def backends():
    out = ["numpy", "torch"]
    if fr._module_summary() is not None:
        out.append("module")
    elif os.environ.get("FPSCOPE_REQUIRE_MODULE") == "1":
        raise AssertionError("FPSCOPE_REQUIRE_MODULE=1 but the fpscope module (tensor_summary) is not importable")
    return out


def devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def oracle(w):
    """keys, counts and stats by tracecheck (per-element rules written independently of the recorder)."""
    keys, counts = tracecheck.histogram_of(w)
    finite = w[np.isfinite(w)]
    return keys, counts, {"count": w.size, "amax": float(np.abs(finite).max()) if finite.size else 0.0,
                          "zeros": int((w == 0).sum()), "infs": int(np.isinf(w).sum()), "nans": int(np.isnan(w).sum())}


def same(a, b):
    """Bit-for-bit equality of two (keys, counts, stats): dtypes, arrays, and amax as float64 bits."""
    (ka, ca, sa), (kb, cb, sb) = a, b
    bits = lambda s: {**s, "amax": struct.pack("<d", s["amax"])}  # noqa: E731
    return (ka.dtype == kb.dtype == np.uint32 and ca.dtype == cb.dtype == np.uint64 and np.array_equal(ka, kb)
            and np.array_equal(ca, cb) and bits(sa) == bits(sb) and all(type(v) is int for k, v in sa.items()
                                                                        if k != "amax"))


def special_values():
    """float32 arrays full of what a histogram or amax can get wrong, and plain ones."""
    bits = lambda *v: np.array(v, np.uint32).view(np.float32)  # noqa: E731
    rng = np.random.default_rng(7)
    return {
        "edges": edge_values(seed=11).view(np.float32),
        "zeros": bits(0, 0x80000000, 0, 0x80000000),
        "subnormals": bits(1, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000, 0x00000003),
        "max finite": bits(0x7F7FFFFF, 0xFF7FFFFF, 0x3F800000),
        "inf only": bits(0x7F800000, 0xFF800000),
        "nan payloads": bits(0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF, 0x7F812345),
        "all nan": bits(0x7FC00000),
        "inf beside max": bits(0x7F800000, 0x7F7FFFFF, 0xFF800000, 0xFF7FFFFE),
        "one": np.array([-2.5], np.float32),
        "empty": np.zeros(0, np.float32),
        "normal": rng.standard_normal(100_003).astype(np.float32) * np.float32(2.0 ** -12),
        "wide": (rng.standard_normal(50_000) * 2.0 ** rng.integers(-140, 120, 50_000)).astype(np.float32),
        # the same special values inside the C++ path's vector loop (64 values a step, inputs of
        # 128 and more), not only in its one-by-one tail: no finite value at all, and the special
        # patterns scattered among gradient-like values, the largest finite one beside +-inf
        "nan bulk": np.resize(bits(0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF, 0x7F812345,
                                   0x7F800000, 0xFF800000), 1001),
        "specials scattered": scattered(rng),
    }


def scattered(rng):
    w = (rng.standard_normal(10_007) * 2.0 ** rng.integers(-30, 1, 10_007)).astype(np.float32)
    special = edge_values(n_random=0, seed=13)
    special = special[(special & 0x7FFFFFFF) != 0x7F7FFFFF]  # the max finite only where placed below
    w[rng.choice(w.size, special.size, replace=False)] = special.view(np.float32)
    w[5000:5003] = np.array([0x7F800000, 0x7F7FFFFF, 0xFF800000], np.uint32).view(np.float32)
    return w


@pytest.mark.parametrize("name", list(special_values()))
def test_backends_agree_bit_for_bit(name, monkeypatch):
    monkeypatch.setattr(fr, "_TORCH_SLICE", 1000)  # several slices: the torch path's sums across them
    w = special_values()[name]
    want = oracle(w)
    assert int(want[1].sum()) == w.size
    for b in backends():
        assert same(fr.summarize(w, b), want), b
    for dev in devices():
        assert same(fr.summarize(torch.from_numpy(w.copy()).to(dev), "torch"), want), dev
        assert same(fr.summarize(torch.from_numpy(w.copy()).to(dev)), want), dev  # the default pick


def test_module_is_multithreaded_and_the_same():
    if "module" not in backends():
        pytest.skip("the fpscope module is not importable")
    w = special_values()["wide"]
    w = np.concatenate([w] * 25)  # 1.25e6 values: above the library's parallel threshold (2^20)
    one = fr.summarize(w, "module", threads=1)
    assert same(fr.summarize(w, "module", threads=2), one) and same(one, oracle(w))


def test_module_reads_a_contiguous_float32_array_in_place():
    # The module reads a C-contiguous float32 array where it lies: what it allocates is the small
    # result (tracemalloc sees NumPy's allocations); a strided view is copied, which the same
    # measure sees, so the check can fail.
    if "module" not in backends():
        pytest.skip("the fpscope module is not importable")
    import tracemalloc

    summary = fr._module_summary()
    w = special_values()["normal"]
    summary(w, 1)  # first-call allocations (module state) out of the way
    peaks = {}
    for name, a in (("contiguous", w), ("strided", w[::2])):
        tracemalloc.start()
        try:
            summary(a, 1)
            peaks[name] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks["contiguous"] < w.nbytes // 8 and peaks["strided"] >= w[::2].nbytes, peaks


def test_module_checks_its_input():
    if "module" not in backends():
        pytest.skip("the fpscope module is not importable")
    summary = fr._module_summary()
    with pytest.raises(TypeError, match="float32"):
        summary(np.zeros(3, np.float64))
    with pytest.raises(ValueError):
        summary(np.zeros(3, np.float32), -1)
    h = np.array([1.0, -np.inf, np.nan, 0.0], np.float16)  # float16 widens exactly, as widen() does
    assert same(summary(h), oracle(h.astype(np.float32)))


def test_torch_keys_every_fraction_pattern():
    # the torch key arithmetic (bit lengths through a float32 conversion) for every run length,
    # next bit and rest of the fraction, in every exponent class
    bits = edge_values(n_random=20000, seed=5)
    got = fr._torch_keys(torch.from_numpy(bits.view(np.int32))).numpy().view(np.uint32)
    assert got.size == bits.size > 0
    np.testing.assert_array_equal(got, tracecheck.keys_of(bits.view(np.float32)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_widening_keeps_nan_payloads(dtype):
    # widen() (NumPy) keeps a float16 signaling NaN's payload; torch's own float16 -> float32 quiets
    # it (0x7C01 -> 0x7FC02000): the torch path must widen as widen() does
    h = np.array([0x7C01, 0xFC01, 0x7E00, 0x7D55, 0x7C00, 0xFC00, 0x0001, 0x8000, 0x3C00, 0x7BFF, 0x0000, 0xFFFF,
                  0x7F80, 0x7F81, 0xFF81, 0x0080, 0x8001], np.uint16)
    t = torch.from_numpy(h.view(np.int16)).view(getattr(torch, dtype))
    got = fr._torch_bits32(t, dtype).numpy().view(np.uint32)
    np.testing.assert_array_equal(got, fr.widen(dtype, h).view(np.uint32))
    np.testing.assert_array_equal(got, tracecheck.widen(dtype, h).view(np.uint32))
    if dtype == "float16":
        assert t.float().view(torch.int32).numpy().view(np.uint32)[0] != got[0]  # torch alone would differ


def steps():
    """Tensors of every stored type, special values included, for whole recordings."""
    v = special_values()
    return [
        {"edges": torch.from_numpy(v["edges"].copy()), "nan": torch.from_numpy(v["nan payloads"].copy()),
         "half": torch.tensor([1.0, -0.0, 65504.0, 6e-8, float("inf"), float("nan")], dtype=torch.float16),
         "bf16": torch.from_numpy(np.array([0x7F81, 0x0001, 0x8000, 0x3F80], np.uint16).view(np.int16)).view(
             torch.bfloat16),
         "sub": v["subnormals"].copy(), "empty": torch.zeros(0, 3)},
        {"wide": v["wide"].copy(), "big": torch.from_numpy(v["normal"].copy()).reshape(-1, 1)[::2],  # not contiguous
         "e4m3": np.array([0.5, -448, 0.001953125, np.nan], np.float32).astype(ml_dtypes.float8_e4m3fn),
         "e5m2": np.array([1.5, 57344, -0.0, np.inf], np.float32).astype(ml_dtypes.float8_e5m2)},
    ]


def record(path, backend, dtype=None, background=True):
    with fr.Recorder(path, "backends", dtype=dtype, backend=backend, background=background, max_steps=4,
                     created="2000-01-01T00:00:00Z") as rec:
        for i, s in enumerate(steps()):
            rec.record(i, s, loss=1.0, mode=("both", "hist")[i % 2])
    with h5py.File(path, "r") as f:
        tracecheck.check_trace(f)
        return tracecheck.digest(f)


@pytest.mark.parametrize("dtype", [None, "float32", "bfloat16"])
def test_recordings_identical(tmp_path, dtype):
    # the same steps recorded through every backend (and with and without the writer thread):
    # the same file content, bit for bit; check_trace compares each histogram with its values
    want = record(tmp_path / "numpy.h5", "numpy", dtype, background=False)
    assert len(want) == 2
    for b in backends() + [None]:
        assert record(tmp_path / f"{b}.h5", b, dtype) == want, b


def test_without_the_module(tmp_path):
    # a process in which `import fpscope` fails records the same file through NumPy
    script = (f"import sys; sys.modules['fpscope'] = None; sys.path[:0] = [{str(HERE)!r}, {str(ROOT / 'tools/record')!r}]\n"
              "import fpscope_record as fr, test_backends as tb\n"
              "assert fr._module_summary() is None\n"
              f"tb.record({str(tmp_path / 'none.h5')!r}, None)\n"
              "try:\n    fr.Recorder('/nonexistent/x.h5', 'x', backend='module')\nexcept RuntimeError as e:\n"
              "    print('refused:', e)\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=HERE)
    assert p.returncode == 0, p.stderr
    assert "refused: backend 'module'" in p.stdout
    with h5py.File(tmp_path / "none.h5", "r") as f:
        got = tracecheck.digest(f)
    assert got == record(tmp_path / "numpy.h5", "numpy")


@pytest.mark.parametrize("kind", ["<f4", "<u2", "|u1", "<u4", "<u8"])
def test_chunks_are_hdf5s_own(tmp_path, kind, monkeypatch):
    # the recorder's chunks (padded, shuffled, deflated here, written with H5Dwrite_chunk) are
    # byte for byte those HDF5's filter pipeline writes for the same data (h5py create_dataset)
    import concurrent.futures

    monkeypatch.setattr(fr, "CHUNK", 1000)
    data = np.random.default_rng(3).integers(0, 1 << 16, 3500).astype(kind)  # 4 chunks, the last partial
    with concurrent.futures.ThreadPoolExecutor(2) as pool, h5py.File(tmp_path / "c.h5", "w") as f:
        ours = fr._dataset(f, "ours", data, pool)
        theirs = f.create_dataset("theirs", data=data, chunks=(1000,), shuffle=True, compression="gzip",
                                  compression_opts=4)
        assert ours.chunks == theirs.chunks and ours.compression == "gzip" and ours.shuffle
        n = 0
        for lo in range(0, data.size, 1000):
            mine, hers = ours.id.read_direct_chunk((lo,)), theirs.id.read_direct_chunk((lo,))
            assert mine == hers, lo
            n += 1
        assert n == 4
        np.testing.assert_array_equal(ours[()], data)
