"""Items 8 and 18: dot's memory is bounded (a documented limit on the result's size, refused with
one line; results streamed, never held) and its summary agrees with its rows when inputs or the
accumulator reach inf."""
import json
import subprocess

import numpy as np
import pytest

from conftest import assert_one_line_error, limited, run

GiB = 1 << 30


def save(tmp, name, a):
    p = tmp / name
    np.save(p, a)
    return p


def test_huge_result_refused_in_bounded_memory(fpscope, tmp_path):
    # Two 128-byte files whose product has 4e10 results: before, an uncaught bad_alloc.
    a = save(tmp_path, "a.npy", np.zeros((200000, 0), np.float32))
    b = save(tmp_path, "b.npy", np.zeros((0, 200000), np.float32))
    for extra in ([], ["--json"]):
        p = run([fpscope.path, "dot", a, b, *extra], timeout=60, preexec_fn=limited(address_space=2 * GiB))
        assert_one_line_error(p, "200000", "limit", status=1)
        assert "bad_alloc" not in p.stderr


def test_results_are_streamed_not_held(fpscope, tmp_path):
    # 400 x 1000 results: about 2 KB each were held (text and --json alike), 800 MB.
    a = save(tmp_path, "a.npy", np.ones((400, 1), np.float32))
    b = save(tmp_path, "b.npy", np.full((1, 1000), 2.0, np.float32))
    p = run([fpscope.path, "dot", a, b], timeout=300, preexec_fn=limited(address_space=GiB // 2))
    assert p.returncode == 0, p.stderr
    assert "399980 more" in p.stdout and "max |rel error| 0," in p.stdout
    out = tmp_path / "out.json"
    with open(out, "w") as f:
        p = subprocess.run([fpscope.path, "dot", a, b, "--json"], timeout=300, stdout=f, stderr=subprocess.PIPE,
                           text=True, preexec_fn=limited(address_space=GiB // 2))
    assert p.returncode == 0, p.stderr
    doc = json.loads(out.read_text())
    assert doc["shape"] == [400, 1000] and len(doc["results"]) == 400000
    assert all(r["value"] == 2.0 and r["exact"] == 2.0 for r in doc["results"])
    assert doc["results"][-1]["index"] == [399, 999] and doc["max_abs_rel_error"] == 0


def test_inf_summary_agrees_with_rows(fpscope, tmp_path):
    # 3e38 squared: bf16 inputs are finite (3e38 rounds to 3.004e38) and so is the exact product
    # (9e76), but the fp32 accumulator overflows to inf: an infinite error, in the rows and the
    # summary alike.
    x = save(tmp_path, "x.npy", np.array([3e38], np.float32))
    q = float(np.float32(3.00405527047391e+38))  # 3e38 in bf16 (ml_dtypes says so)
    doc = json.loads(fpscope.ok("dot", x, x, "--format", "bf16", "--json"))
    r = doc["results"][0]
    assert r["value"] is None and r["exact"] == q * q  # JSON has no inf: null
    assert r["rel_error"] is None and doc["max_abs_rel_error"] is None and doc["undefined_errors"] == 0
    text = fpscope.ok("dot", x, x, "--format", "bf16")
    row = next(line for line in text.splitlines() if line.strip().startswith("[0,0]"))
    assert row.split()[1] == "inf" and row.split()[3] == "inf"
    assert "max |rel error| inf, max |ulp error| inf" in text
    # In fp16 the inputs themselves round to inf: no exact value, no error (NaN) in the row, and
    # the summary says so rather than "max |rel error| 0".
    text = fpscope.ok("dot", x, x)
    row = next(line for line in text.splitlines() if line.strip().startswith("[0,0]"))
    assert row.split()[1] == "inf" and row.split()[2] == "nan" and row.split()[4] == "nan"
    summary = text.splitlines()[-1]
    assert "max |rel error| 0" not in summary and "1 result" in summary and "no exact value" in summary
    doc = json.loads(fpscope.ok("dot", x, x, "--json"))
    assert doc["undefined_errors"] == 1 and doc["max_abs_rel_error"] is None
