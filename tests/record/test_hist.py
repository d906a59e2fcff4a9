"""The recorder's histograms (numpy, vectorised) equal an independent per-element count in plain
Python integers (tracecheck.key_of), on data full of edge cases, and in the trace it writes."""
import collections

import h5py
import numpy as np

import tracecheck
from fpscope_record import Recorder, bucket_keys, histogram


def edge_values(n_random=3000, seed=1):
    """float32 bit patterns: zeros, subnormals, normals, inf, NaNs, long runs of ones in the
    fraction (every run length, each followed by 0 b and zero / nonzero rest), random bits."""
    rng = np.random.default_rng(seed)
    bits = [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FFFFFFF,
            0x00000001, 0x80000001, 0x007FFFFF, 0x00400000, 0x00000002, 0x00000003, 0x3F800000, 0x7F7FFFFF,
            0x00800000, 0x33800000, 0x477FE000, 0x43E00000, 0x43E80000]
    for exponent in (0, 1, 100, 127, 142, 254, 255):
        for sign in (0, 1):
            for run in range(24):
                ones = ((1 << run) - 1) << (23 - run)
                rest = 22 - run  # bits after the terminating zero
                tails = {0}
                if rest >= 1:
                    tails |= {1 << (rest - 1), (1 << (rest - 1)) | 1, (1 << rest) - 1}
                    if rest >= 2:
                        tails |= {1, (1 << (rest - 1)) - 1}
                for tail in tails:
                    bits.append(sign << 31 | exponent << 23 | ones | tail)
    bits += rng.integers(0, 1 << 32, n_random, dtype=np.uint64).tolist()
    bits += (rng.standard_normal(500).astype(np.float32) * np.float32(2.0 ** -20)).view(np.uint32).tolist()
    return np.array(bits, dtype=np.uint32)


def test_key_fields_constructively():
    # the key is sign|exponent, run, next bit, rest-nonzero: build values from the fields
    for sign in (0, 1):
        for exponent in (0, 1, 127, 200, 255):
            for run in range(24):
                rest = 22 - run
                for b in ((0, 1) if rest >= 1 else (0,)):
                    for below in ((0, 1) if rest >= 2 else (0,)):
                        fraction = ((1 << run) - 1) << (23 - run)
                        if rest >= 1:
                            fraction |= b << (rest - 1)
                        fraction |= below  # lowest bit set: "every bit below is zero" is false
                        v = sign << 31 | exponent << 23 | fraction
                        want = (sign << 8 | exponent) << 7 | run << 2 | b << 1 | below
                        assert tracecheck.key_of(v) == want, hex(v)
                        assert int(bucket_keys(np.array([v], np.uint32).view(np.float32))[0]) == want, hex(v)


def test_numpy_keys_equal_plain_python_per_element():
    bits = edge_values()
    got = bucket_keys(bits.view(np.float32))
    assert got.dtype == np.uint32
    assert got.size == bits.size > 0  # (zip would stop at the shorter, or check nothing)
    for v, k in zip(bits.tolist(), got.tolist()):
        assert k == tracecheck.key_of(v), f"{v:#010x}: {k:#06x} != {tracecheck.key_of(v):#06x}"
    np.testing.assert_array_equal(tracecheck.keys_of(bits.view(np.float32)), got)


def test_histogram_equals_per_element_count():
    x = edge_values(seed=2).view(np.float32)
    assert x.size > 0
    want = collections.Counter(tracecheck.key_of(v) for v in x.view(np.uint32).tolist())
    keys, counts = histogram(x)
    assert keys.dtype == np.uint32 and counts.dtype == np.uint64
    assert list(keys) == sorted(want) and dict(zip(keys.tolist(), counts.tolist())) == want
    assert int(counts.sum()) == x.size


def test_keys_ordered_by_magnitude():
    x = np.abs(np.random.default_rng(3).standard_normal(20000).astype(np.float32)) * np.float32(2.0 ** 10)
    x = np.sort(np.concatenate([x, np.float32(2.0 ** -140) * x[:2000]]))
    k = bucket_keys(x).astype(np.int64)
    assert k.size == x.size > 1 and np.all(np.diff(k) >= 0)
    k = bucket_keys(-x).astype(np.int64)
    assert k.size == x.size and np.all(np.diff(k) >= 0) and np.all(k >= 1 << 15)


def test_recorded_histogram_equals_count(tmp_path):
    x = edge_values(seed=4).view(np.float32)
    half = np.array([0.0, -0.0, 1e-7, 65504, np.inf, np.nan, 3.14159, -2.0 ** -24], np.float16)
    path = tmp_path / "h.h5"
    with Recorder(path, "hist test", mode="hist", dtype=None, max_steps=1) as rec:
        rec.record(0, {"x": x, "half": half})
    with h5py.File(path, "r") as f:
        for name, values in (("x", x), ("half", half.astype(np.float32))):
            g = f["steps/00000000/tensors"][name]
            assert "values" not in g
            want = collections.Counter(tracecheck.key_of(v) for v in values.view(np.uint32).tolist())
            assert dict(zip(g["hist_keys"][()].tolist(), g["hist_counts"][()].tolist())) == want
            assert g.attrs["count"] == values.size
            assert g.attrs["nans"] == np.isnan(values).sum() and g.attrs["infs"] == np.isinf(values).sum()
            assert g.attrs["zeros"] == (values == 0).sum()
            assert g.attrs["amax"] == np.abs(values[np.isfinite(values)]).max()
        tracecheck.check_trace(f)
