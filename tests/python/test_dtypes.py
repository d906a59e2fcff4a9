"""Which arrays the module takes: dtypes are matched by kind, size and byte order, never by
object identity. Run under Debian's NumPy 1.24 (ctest python.dtypes) and under PyPI's NumPy 2
with the installed wheel (install.pypi.python); the rest of tests/python runs in both too.

Each case failed before the check was by kind, size and byte order: a uint16 dtype that is not
NumPy's own object was refused ("needs uint16 codes, got dtype uint16"), a big-endian float32
array was read as native floats (ones encoded to e4m3 code 0), and a module built with
pybind11 2.10 read NumPy 2's float32 as no float32 at all."""
import numpy as np
import pytest

import fpscope


def tagged(dtype):
    """`dtype` equal to NumPy's but another object: one with metadata."""
    d = np.dtype(dtype, metadata={"from": "another library"})
    assert d == np.dtype(dtype) and d is not np.dtype(dtype)
    return d


def test_numpy_version_is_one_this_module_reads():
    # The suite runs under both majors; the point of the other tests is that they pass in both.
    assert int(np.__version__.split(".")[0]) in (1, 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_encode_takes_every_float_dtype(dtype):
    x = np.array([1.0, -2.0, 448.0, 0.0], dtype)
    want = np.array([0x38, 0xC0, 0x7E, 0x00], np.uint8)  # e4m3: 1.0 = 0 0111 000, 448 = 0 1111 110
    np.testing.assert_array_equal(fpscope.encode(x, "e4m3"), want)
    np.testing.assert_array_equal(fpscope.encode(x.astype(tagged(dtype)), "e4m3"), want)


def test_codes_of_an_equal_dtype_are_taken_everywhere():
    u16 = tagged(np.uint16)
    codes = np.array([0x3C00, 0x7C00, 0x0001], u16)  # fp16: 1.0, +inf, the least subnormal
    np.testing.assert_array_equal(fpscope.decode(codes, "fp16"), [1.0, np.inf, 2.0 ** -24])
    np.testing.assert_array_equal(fpscope.classify(codes, "fp16"), [2, 3, 1])  # normal, infinite, subnormal
    out = np.zeros(3, u16)
    fpscope.encode(np.array([1.0, np.inf, 2.0 ** -24], np.float32), "fp16", out=out)
    np.testing.assert_array_equal(out, codes)
    np.testing.assert_array_equal(fpscope.apply("mul", codes, codes, fmt="fp16"), [0x3C00, 0x7C00, 0x0000])


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">f2"])
def test_big_endian_floats_are_refused_not_misread(dtype):
    x = np.ones(3, dtype)
    with pytest.raises(TypeError, match=f"got dtype {dtype}"):
        fpscope.encode(x, "e4m3")
    # What to do instead, and that it gives the native result.
    np.testing.assert_array_equal(fpscope.encode(x.astype(x.dtype.newbyteorder("=")), "e4m3"), [0x38] * 3)


def test_big_endian_codes_are_refused():
    with pytest.raises(TypeError, match="needs uint16 codes, got dtype >u2"):
        fpscope.decode(np.array([0x3C00], ">u2"), "fp16")
    with pytest.raises(TypeError, match="out has dtype >u2, expected uint16"):
        fpscope.encode(np.ones(1, np.float32), "fp16", out=np.zeros(1, ">u2"))
