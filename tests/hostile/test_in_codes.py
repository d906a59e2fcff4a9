"""Item 16: codes with bits set above the format's width are refused everywhere (the library's
bulk decode and arithmetic check them), as calc and cast already did; before, hist and Python's
decode/apply/classify masked them silently."""
import numpy as np
import pytest

from conftest import assert_one_line_error, run


def test_hist_refuses_codes_wider_than_the_format(fpscope, tmp_path):
    x = tmp_path / "codes.npy"
    np.save(x, np.arange(256, dtype=np.uint8))
    p = run([fpscope.path, "hist", x, "--input-format", "e2m1", "-q"], timeout=60)
    assert_one_line_error(p, str(x), "0x10", "does not fit in e2m1", status=1)
    np.save(x, np.arange(16, dtype=np.uint8))  # every e2m1 code: fine
    p = run([fpscope.path, "hist", x, "--input-format", "e2m1", "-q"], timeout=60)
    assert p.returncode == 0, p.stderr


CASES = [("e2m1", np.uint8, 0xFF), ("e2m1", np.uint8, 0x10), ("e3m2", np.uint8, 0xFF), ("e2m3", np.uint8, 0x40),
         ("tf32", np.uint32, 0xFFFFFFFF), ("tf32", np.uint32, 1 << 19)]


@pytest.mark.parametrize("fmt,dtype,code", CASES)
def test_python_decode_and_apply_refuse(fmt, dtype, code):
    fpscope = pytest.importorskip("fpscope")
    bits = np.array([0, code], dtype)
    with pytest.raises(ValueError, match=f"does not fit in {fmt}"):
        fpscope.decode(bits, fmt)
    with pytest.raises(ValueError, match=f"does not fit in {fmt}"):
        fpscope.classify(bits, fmt)
    with pytest.raises(ValueError, match=f"does not fit in {fmt}"):
        fpscope.apply("add", bits, np.zeros(2, dtype), fmt=fmt)
    with pytest.raises(ValueError, match=f"does not fit in {fmt}"):
        fpscope.apply("add", np.zeros(2, dtype), bits, fmt=fmt)
    # the widest code that fits still decodes
    top = np.array([(1 << fpscope.format_info(fmt)["bits"]) - 1], dtype)
    assert fpscope.decode(top, fmt).shape == (1,) and fpscope.classify(top, fmt).shape == (1,)
    assert fpscope.apply("add", top, np.zeros(1, dtype), fmt=fmt).shape == (1,)
