"""fpscope dot end to end: inputs rounded to the format (checked with ml_dtypes / numpy, not
fpscope), exact products, the accumulator model (binary32 steps checked with numpy float32,
which rounds each sum once), exact errors with Python fractions, shapes and bad input."""
from fractions import Fraction

import numpy as np
import pytest

from conftest import assert_one_line_error


def save(tmp, name, a):
    p = tmp / name
    np.save(p, a)
    return p


def test_sum_of_ones_stalls_in_fp16(fpscope, tmp):
    x = save(tmp, "ones.npy", np.ones(4096, np.float32))
    out = fpscope.json("dot", x, x, "--acc", "fp16", "--json")
    r = out["results"][0]
    # 2048 + 1 is a tie in fp16 (ulp 2 at 2048) and goes to the even 2048: the sum stalls there.
    assert (r["value"], r["exact"], r["abs_error"], r["rel_error"]) == (2048.0, 4096.0, -2048.0, -0.5)
    assert r["ulp_error"] == -512.0  # fp16's last place at 4096 is 4
    promoted = fpscope.json("dot", x, x, "--acc", "fp16", "--block", "128", "--json")
    assert promoted["results"][0]["value"] == 4096.0 and promoted["accumulator"].endswith("every 128")


@pytest.mark.parametrize("fmt,dtype", [("bf16", "bfloat16"), ("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")])
def test_matrix_product_with_fp32_accumulation(fpscope, tmp, fmt, dtype):
    ml = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(7)
    a = (rng.standard_normal((3, 50)) * 4).astype(np.float32)
    b = (rng.standard_normal((50, 2)) * 4).astype(np.float32)
    out = fpscope.json("dot", save(tmp, "a.npy", a), save(tmp, "b.npy", b), "--format", fmt, "--json")
    qa = a.astype(getattr(ml, dtype)).astype(np.float64)
    qb = b.astype(getattr(ml, dtype)).astype(np.float64)
    assert out["shape"] == [3, 2] and out["k"] == 50 and len(out["results"]) == 6
    for r in out["results"]:
        i, j = r["index"]
        acc = np.float32(0)
        for t in range(50):
            acc = np.float32(acc + np.float32(qa[i, t] * qb[t, j]))  # the product is exact in float32
        exact = sum(Fraction(qa[i, t]) * Fraction(qb[t, j]) for t in range(50))
        assert r["value"] == float(acc)
        assert r["exact"] == float(exact)
        assert r["abs_error"] == float(Fraction(float(acc)) - exact)


def test_vector_times_matrix_and_table(fpscope, tmp):
    v = save(tmp, "v.npy", np.arange(4, dtype=np.float32))
    m = save(tmp, "m.npy", np.ones((4, 3), np.float64))
    out = fpscope.json("dot", v, m, "--json")
    assert [r["value"] for r in out["results"]] == [6.0, 6.0, 6.0] and out["shape"] == [1, 3]
    text = fpscope.ok("dot", v, m)
    assert "accumulator fp32 rne" in text and "max |rel error| 0" in text


def test_bad_input(fpscope, tmp):
    v = save(tmp, "v.npy", np.ones(4, np.float32))
    w = save(tmp, "w.npy", np.ones(5, np.float32))
    assert_one_line_error(fpscope.run("dot", v, w), "do not chain", status=2)
    assert_one_line_error(fpscope.run("dot", v, v, "--acc", "fp64"), "unknown accumulator", status=2)
    assert_one_line_error(fpscope.run("dot", v, v, "--format", "fp17"), "unknown format", status=2)
    cube = save(tmp, "c.npy", np.ones((2, 2, 2), np.float32))
    assert_one_line_error(fpscope.run("dot", cube, cube), "shape", status=1)
    ints = save(tmp, "i.npy", np.ones(4, np.uint8))
    assert_one_line_error(fpscope.run("dot", ints, ints), "uint8", status=1)
    assert_one_line_error(fpscope.run("dot", tmp / "missing.npy", v), "missing.npy", status=1)
