"""Item 20's minor input defects: an .npy NumPy cannot load is neither read nor written (more
than 32 dimensions: NumPy 1.x's NPY_MAXDIMS; 2.x allows 64), hist of an empty .h5 says what it
is, and a format named many times over is refused, not ended by a bare std::bad_alloc. (Trace of
a directory: test_in_fifo.py; calc's zero-padded codes: test_in_calc.py.)"""
import os

import numpy as np
import pytest

from conftest import assert_one_line_error, limited, run

GiB = 1 << 30


def npy_with_dims(path, ndim):
    shape = "(" + ", ".join(["1"] * ndim) + ",)"
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    header = d + " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0\0\x80\x3f")


def test_numpy_refuses_more_than_32_dimensions_in_this_venv(tmp_path):
    # The limit checked against the NumPy at hand: 1.x loads 32 dimensions, not 33.
    npy_with_dims(tmp_path / "ok.npy", 32)
    assert np.load(tmp_path / "ok.npy").ndim == 32
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        npy_with_dims(tmp_path / "big.npy", 33)
        with pytest.raises(ValueError):
            np.load(tmp_path / "big.npy")


@pytest.mark.parametrize("ndim", [33, 41])
def test_too_many_dimensions_not_written(fpscope, tmp_path, ndim):
    x = tmp_path / "x.npy"
    npy_with_dims(x, ndim)
    p = run([fpscope.path, "convert", x, "--to", "e4m3", "-o", tmp_path / "out.npy"], timeout=30)
    assert_one_line_error(p, "dimensions", "32", status=1)
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]


def test_32_dimensions_round_trip(fpscope, tmp_path):
    x = tmp_path / "x.npy"
    npy_with_dims(x, 32)
    p = run([fpscope.path, "convert", x, "--to", "e4m3", "-o", tmp_path / "out.npy"], timeout=30)
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "out.npy").shape == (1,) * 32


def test_hist_of_empty_h5_names_hdf5(fpscope, tmp_path):
    t = tmp_path / "t.h5"
    t.write_bytes(b"")
    p = run([fpscope.path, "hist", t], timeout=30)
    assert_one_line_error(p, str(t), "HDF5", status=1)
    assert ".npy" not in p.stderr


def test_many_formats_times_many_scales(fpscope, tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.ones(8, np.float32))
    formats = ",".join(["fp16"] * 20000)
    p = run([fpscope.path, "hist", x, "-f", formats, "--scales", ",".join(["2^-100:2^100"] * 20), "-q"], timeout=60,
            preexec_fn=limited(address_space=2 * GiB))
    assert_one_line_error(p, "fp16", "twice", status=2)
    assert "bad_alloc" not in p.stderr
