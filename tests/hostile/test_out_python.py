"""Issue 19 items 17 and 7 (Python): the module's Trace reads through the library's contained
worker (fpscope/contain.hpp), as the CLI and fpscope.replay do, so a libhdf5 crash or hang on a
hostile file is a ValueError instead of a dead or stuck interpreter; and the module refuses the
scales and thread counts the CLI refuses. Each case runs in a child interpreter: a crash there
must not take pytest down with it."""
import os
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "trace" / "corpus"
TRACE = ROOT / "datasets" / "traces" / "digits-mlp.h5"


def python(code, *args, stall=None, timeout=120):
    env = dict(os.environ)
    if stall is not None:
        env["FPSCOPE_STALL_SECONDS"] = str(stall)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env)


READ_ALL = """
import sys, fpscope
try:
    t = fpscope.Trace(sys.argv[1])
    for i in range(len(t)):
        s = t.step(i)
        for x in s["tensors"]:
            if x["has_values"]: t.values(i, x["name"])
            if x["has_hist"]: t.histogram(i, x["name"])
except ValueError as e:
    print(e)
    sys.exit(3)
print("read")
"""


def test_a_libhdf5_crash_is_a_value_error(tmp_path):
    p = python(READ_ALL, CORPUS / "hdf5-crash-vlen-string.h5")
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)  # before: -11 (SIGSEGV), the interpreter dead
    assert "HDF5 library crashed reading this file (signal 11" in p.stdout, p.stdout
    assert p.stderr == "", p.stderr


def test_a_libhdf5_hang_is_a_value_error(tmp_path):
    start = time.monotonic()
    p = python(READ_ALL, CORPUS / "hdf5-hang-vlen-heap.h5", stall=1, timeout=60)  # before: a hang
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    assert "made no progress reading this file for 1 s" in p.stdout, p.stdout
    assert time.monotonic() - start < 30


def test_every_corpus_file_is_read_or_refused():
    files = sorted(CORPUS.glob("*.h5"))
    assert len(files) > 30
    for f in files:
        p = python(READ_ALL, f, stall=2, timeout=120)
        assert p.returncode in (0, 3), (f.name, p.returncode, p.stderr[-2000:])
        assert p.stderr == "", (f.name, p.stderr[-2000:])  # HDF5's own stack never printed (item 11)


def test_a_good_trace_reads_as_before():
    # Everything through fpscope first, then h5py: HDF5 refuses a second open of a file that this
    # process holds open with another close degree (h5py's), in the contained worker as before.
    code = """
import sys, h5py, numpy as np, fpscope
t = fpscope.Trace(sys.argv[1])
n, model, producer, incomplete = len(t), t.model, t.producer, t.incomplete
got = {}
for i in (0, 7, 199):
    s = t.step(i)
    got[i] = (s, {x["name"]: (t.values(i, x["name"]), t.histogram(i, x["name"])) for x in s["tensors"]})
try:
    t.step(200)
except IndexError:
    pass
else:
    raise AssertionError("no IndexError")
try:
    t.values(0, "nope")
except KeyError:
    pass
else:
    raise AssertionError("no KeyError")
f = h5py.File(sys.argv[1], "r")
groups = list(f["steps"])
assert n == len(groups) == 200, n
assert model.encode() == f.attrs["model"] and producer.encode() == f.attrs["producer"] and incomplete == []
for i, (s, tensors) in got.items():
    g = f["steps"][groups[i]]
    assert s["step"] == g.attrs["step"] and s["loss"] == g.attrs["loss"] and s["lr"] == g.attrs["lr"]
    assert list(tensors) == list(g["tensors"])
    for x in s["tensors"]:
        h = g["tensors"][x["name"]]
        assert x["amax"] == h.attrs["amax"] and x["count"] == h.attrs["count"]
        v, (keys, counts) = tensors[x["name"]]
        assert v.dtype == np.float32 and np.array_equal(v, h["values"][()].reshape(x["shape"]), equal_nan=True)
        assert np.array_equal(keys, h["hist_keys"][()]) and np.array_equal(counts, h["hist_counts"][()])
print("ok")
"""
    p = python(code, TRACE)
    assert p.returncode == 0 and p.stdout == "ok\n", (p.stdout, p.stderr)


def test_nan_and_inf_attributes_read_back(tmp_path):
    from conftest import write_trace
    import numpy as np
    path = write_trace(tmp_path / "t.h5", [{"attrs": {"loss": np.nan, "lr": np.inf, "loss_scale": 65536.0}}])
    p = python("import sys, fpscope\ns = fpscope.Trace(sys.argv[1]).step(0)\nprint(s['loss'], s['lr'], s['loss_scale'])", path)
    assert p.stdout == "nan inf 65536.0\n", (p.stdout, p.stderr)


CHECKS = """
import numpy as np, fpscope
x = np.ones(100, np.float32)
c = fpscope.encode(x, "fp16")
calls = {
    "encode scale": [lambda s: fpscope.encode(x, "fp16", scale=s), [float("nan"), float("inf"), -1.0, 0.0, -float("inf")]],
    "cast scale": [lambda s: fpscope.cast(1.0, "fp16", scale=s), [float("nan"), float("inf"), -1.0]],
    "encode threads": [lambda n: fpscope.encode(x, "fp16", threads=n), [100000, 10**6, -1]],
    "apply threads": [lambda n: fpscope.apply("add", c, c, fmt="fp16", threads=n), [100000, 10**6, -1]],
    "class_counts threads": [lambda n: fpscope.class_counts(x, "fp16", threads=n), [100000, -1]],
    "sweep threads": [lambda n: fpscope.sweep(x, "fp16", threads=n), [100000]],
    "bucket_histogram threads": [lambda n: fpscope.bucket_histogram(x, threads=n), [100000]],
    "replay threads": [lambda n: fpscope.replay(TRACE, threads=n), [100000]],
}
refused = 0
for what, (f, bad) in calls.items():
    for v in bad:
        try:
            f(v)
        except ValueError as e:
            refused += 1
            continue
        raise SystemExit(f"{what} accepted {v!r}")
print(refused)
"""


def test_python_refuses_what_the_cli_refuses():
    p = python(CHECKS.replace("TRACE", repr(str(TRACE))))
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)  # before: SIGSEGV at threads=10**6
    assert int(p.stdout) == 19, p.stdout
