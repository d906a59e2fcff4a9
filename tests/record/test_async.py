"""The background writer: record() returns before the write, the queue is bounded (back-pressure),
flush() and close() wait for the writes, errors in the writer reach the caller, an unclosed
recorder still writes everything; and the steps chosen by sampling (every N, loss-scale
changes, non-finite gradients) and the raw-value byte budget.

What a kill leaves behind is test_crash.py's (every write of a run, on_written's and flush()'s
account of it)."""
import gc
import shutil
import subprocess
import sys
import threading
import warnings

import h5py
import numpy as np
import pytest
import torch

import fpscope_record as fr
import tracecheck
from conftest import HERE, ROOT


def grads(step, n=64):
    return {"w": np.full(n, step + 1, np.float32), "b": np.arange(4, dtype=np.float32) * step}


def listed(path):
    """The steps of a trace, checked; read from a copy (HDF5 refuses to open, in this process, a
    file the recorder still has open): the bytes on disk, as a kill would leave them."""
    copy = path.with_name(path.name + ".copy")
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r") as f:
        tracecheck.check_trace(f)
        return [int(s) for s in f["steps"]]


class Gate:
    """on_written that holds the writer thread at chosen steps until released."""

    def __init__(self, hold):
        self.hold, self.open, self.seen, self.reached = set(hold), threading.Event(), [], threading.Event()

    def __call__(self, step):
        self.seen.append(step)
        if step in self.hold:
            self.reached.set()
            assert self.open.wait(30), "the test never released the writer"


def in_thread(fn):
    """Runs fn in a thread; returns (thread, result list) (the result or the exception)."""
    out = []

    def run():
        try:
            out.append(fn())
        except BaseException as e:  # noqa: BLE001
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_record_returns_before_the_write_and_queue_bounds(tmp_path):
    path = tmp_path / "q.h5"
    gate = Gate(hold={0})
    rec = fr.Recorder(path, "queue", max_pending=2, on_written=gate)
    try:
        assert rec.record(0, grads(0))
        assert gate.reached.wait(30)  # the writer is held in step 0's on_written
        assert rec.record(1, grads(1))  # returns at once: queued behind step 0
        assert rec.steps_recorded == 2 and rec.steps_written == 1
        t, out = in_thread(lambda: rec.record(2, grads(2)))  # steps 0 and 1 held: the queue is full
        t.join(0.5)
        assert t.is_alive() and not out, "record() did not wait for room in the queue"
        f, fout = in_thread(rec.flush)
        f.join(0.2)
        assert f.is_alive(), "flush() returned while steps were still queued"
        gate.open.set()
        t.join(30)
        f.join(30)
        assert out == [True] and fout == [None]
        rec.flush()
        assert rec.steps_written == 3 and gate.seen == [0, 1, 2]
        assert listed(path) == [0, 1, 2]  # on disk once flush() returned, before close
    finally:
        gate.open.set()
        rec.close()


def test_queue_bounded_by_bytes(tmp_path):
    gate = Gate(hold={0})
    big = {"w": np.ones(1 << 16, np.float32)}  # 256 KiB copied out per step
    with fr.Recorder(tmp_path / "b.h5", "bytes", max_pending=100, max_pending_bytes=300 << 10,
                     on_written=gate) as rec:
        rec.record(0, big)
        assert gate.reached.wait(30)
        t, out = in_thread(lambda: rec.record(1, big))  # 256 KiB held + 256 KiB > 300 KiB
        t.join(0.5)
        assert t.is_alive() and not out
        gate.open.set()
        t.join(30)
        assert out == [True]
    assert listed(tmp_path / "b.h5") == [0, 1]


def test_record_copies_the_gradients(tmp_path):
    # the loop changes the gradients once record() returns (zero_grad, the next backward): the
    # trace holds them as they were at record()
    gate = Gate(hold={0})
    g = torch.ones(1000)
    a = np.ones(1000, np.float32)
    with fr.Recorder(tmp_path / "c.h5", "copy", on_written=gate, dtype=None) as rec:
        rec.record(0, {"g": g, "a": a, "h": g.half()})
        rec.record(1, {"g": g, "a": a, "h": g.half()})  # queued while step 0 is held
        g.zero_()
        a[:] = 7
        gate.open.set()
    with h5py.File(tmp_path / "c.h5", "r") as f:
        for s in ("00000000", "00000001"):
            t = f[f"steps/{s}/tensors"]
            assert (t["g/values"][()] == 1).all() and (t["a/values"][()] == 1).all()
            assert t["g"].attrs["amax"] == 1 and t["g"].attrs["zeros"] == 0


def fail_at(monkeypatch, steps):
    """Makes the writer fail (ENOSPC) in the middle of writing these steps (a mutable set): after
    the step group and its first tensor group are made, before anything is written into them."""
    current = []
    real_write, real_put = fr._Writer._write, fr._put_tensor

    def write(self, job):
        current[:] = [job.step]
        return real_write(self, job)

    def put(*args, **kw):
        if current[0] in steps:
            raise OSError(28, "No space left on device (injected)")
        return real_put(*args, **kw)

    monkeypatch.setattr(fr._Writer, "_write", write)
    monkeypatch.setattr(fr, "_put_tensor", put)
    return steps


def test_writer_error_reaches_the_next_call(tmp_path, monkeypatch):
    path = tmp_path / "e.h5"
    gate = Gate(hold={1})
    failing = fail_at(monkeypatch, set())
    rec = fr.Recorder(path, "errors", on_written=gate, max_pending=4)
    rec.record(0, grads(0))
    rec.record(1, grads(1))
    assert gate.reached.wait(30)
    failing.add(2)  # step 2's write fails; 3 is queued behind it
    rec.record(2, grads(2))
    rec.record(3, grads(3))
    gate.open.set()
    with pytest.raises(fr.RecorderError, match="step 2 .*No space left") as e:
        rec.flush()
    assert e.value.step == 2 and isinstance(e.value.__cause__, OSError) and e.value.__cause__.errno == 28
    with pytest.raises(fr.RecorderError):  # and again: the writer has stopped
        rec.record(4, grads(4))
    rec.close()  # already reported: close() does not raise it a second time
    assert listed(path) == [0, 1]  # what was written before stays whole; 3 was dropped
    assert gate.seen == [0, 1]


def test_unreported_error_raised_by_close(tmp_path, monkeypatch):
    fail_at(monkeypatch, {0})
    rec = fr.Recorder(tmp_path / "c.h5", "close raises")
    rec.record(0, grads(0))
    with pytest.raises(fr.RecorderError, match="step 0"):
        rec.close()
    rec.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        rec.record(1, grads(1))
    with pytest.raises(ValueError, match="closed"):
        rec.flush()
    assert listed(tmp_path / "c.h5") == []


def test_error_raised_in_with_block(tmp_path, monkeypatch):
    fail_at(monkeypatch, {1})
    with pytest.raises(fr.RecorderError, match="step 1"):
        with fr.Recorder(tmp_path / "w.h5", "with") as rec:
            for s in range(3):
                rec.record(s, grads(s))
    assert listed(tmp_path / "w.h5") == [0]


CHILD_FULL = """
import resource, signal, sys
sys.path[:0] = [{here!r}, {record!r}]
import numpy as np, fpscope_record as fr
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (6 << 20, 6 << 20))
rng = np.random.default_rng(0)
rec = fr.Recorder({path!r}, "full disk", mode="raw")
try:
    for step in range(50):
        rec.record(step, {{"w": rng.standard_normal(1 << 17).astype(np.float32)}})  # ~0.5 MB a step
    rec.close()
except fr.RecorderError as e:
    print("raised", e.step, type(e.__cause__).__name__, rec.steps_written)
    rec.close()
"""


def test_real_write_error_reaches_the_caller(tmp_path):
    # a real failure inside HDF5 (the file size limit: EFBIG, as a full disk gives ENOSPC) in the
    # writer thread: raised by record() or close(), and the file keeps the steps written before
    path = tmp_path / "full.h5"
    code = CHILD_FULL.format(here=str(HERE), record=str(ROOT / "tools/record"), path=str(path))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    words = p.stdout.split()
    assert words[0] == "raised", p.stdout + p.stderr
    failed, written = int(words[1]), int(words[3])
    assert 0 < failed < 50 and written == failed
    assert listed(path) == list(range(written))


def test_dropped_recorder_writes_everything(tmp_path):
    path = tmp_path / "d.h5"
    rec = fr.Recorder(path, "dropped")
    for s in range(5):
        rec.record(s, grads(s))
    del rec
    gc.collect()
    assert listed(path) == list(range(5))


def test_exit_without_close_writes_everything(tmp_path):
    path = tmp_path / "x.h5"
    code = (f"import sys; sys.path[:0] = [{str(ROOT / 'tools/record')!r}]\n"
            "import numpy as np, fpscope_record as fr\n"
            f"rec = fr.Recorder({str(path)!r}, 'exit')\n"
            "for s in range(20):\n    rec.record(s, {'w': np.full(1 << 16, s, np.float32)})\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert listed(path) == list(range(20))


def test_sync_mode_writes_in_record(tmp_path):
    path = tmp_path / "s.h5"
    seen = []
    with fr.Recorder(path, "sync", background=False, on_written=seen.append) as rec:
        for s in range(3):
            rec.record(s, grads(s))
            assert seen == list(range(s + 1)) and listed(path) == list(range(s + 1))


# ---- sampling and the raw budget ----------------------------------------------------------------

def test_sampling(tmp_path):
    path = tmp_path / "sample.h5"
    got = {}
    scale = {s: 2.0 ** 16 if s < 23 else 2.0 ** 15 for s in range(40)}
    with fr.Recorder(path, "sampling", every=10) as rec:
        for s in range(40):
            g = grads(s)
            if s == 22:
                g["b"][1] = np.inf  # the overflow that makes the scaler halve the scale after it
            if s == 27:
                g["w"][5] = np.nan
            got[s] = rec.record(s, g, loss_scale=scale[s])
    want = [0, 10, 20, 22, 23, 27, 30]  # every 10th; the inf; the new scale; the NaN
    assert [s for s, v in got.items() if v] == want
    assert listed(path) == want


def test_sampling_options_and_torch(tmp_path):
    t = lambda v: {"w": torch.tensor(v, dtype=torch.float32)}  # noqa: E731
    big = t([3e38, 3e38, -1.0])  # finite, but its float32 sum overflows: the exact check decides
    with fr.Recorder(tmp_path / "o.h5", "options", every=5, on_scale_change=False) as rec:
        assert not rec.record(1, big)
        assert rec.record(2, t([1.0, float("inf")]))
        assert rec.record(3, {"h": torch.tensor([1.0, float("nan")], dtype=torch.float16)})
        assert not rec.record(4, t([1.0]), loss_scale=8.0)  # scale changes are off
        assert rec.record(6, t([1.0]), nonfinite=True)  # the caller knows better
        assert not rec.record(7, t([float("nan")]), nonfinite=False)
        assert not rec.record(8, {"a": np.array([1, 2], np.float32)})
        assert rec.record(9, {"a": np.array([1, np.nan], np.float32).astype(np.float16)})
    assert listed(tmp_path / "o.h5") == [2, 3, 6, 9]
    with fr.Recorder(tmp_path / "p.h5", "off", every=5, on_nonfinite=False) as rec:
        assert not rec.record(1, t([float("inf")]))
        assert rec.record(2, t([1.0]), loss_scale=2.0)  # 1.0 -> 2.0
        assert not rec.record(3, t([1.0]), loss_scale=2.0)
        assert not rec.wants(3) and rec.wants(5)


def test_raw_budget(tmp_path):
    path = tmp_path / "budget.h5"
    step = {"w": np.ones(1000, np.float32), "h": np.ones(500, np.float16)}  # 5000 bytes raw
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with fr.Recorder(path, "budget", raw_budget=12000, dtype=None) as rec:
            for s in range(4):
                rec.record(s, step, mode="raw" if s == 3 else "both")
            assert rec.raw_bytes == 10000
    assert sum("raw_budget" in str(x.message) for x in w) == 1
    with h5py.File(path, "r") as f:
        members = [sorted(f[f"steps/{s:08d}/tensors/w"]) for s in range(4)]
    assert members == [["hist_counts", "hist_keys", "values"]] * 2 + [["hist_counts", "hist_keys"]] * 2
    assert listed(path) == [0, 1, 2, 3]


def test_options_checked(tmp_path):
    for kw in ({"raw_budget": -1}, {"max_pending": 0}, {"backend": "cuda"}, {"threads": -1}):
        with pytest.raises(ValueError):
            fr.Recorder(tmp_path / "x.h5", "bad", **kw)


def test_sigint_during_backpressure(tmp_path):
    # Ctrl-C while record() waits for room: KeyboardInterrupt in the loop, and leaving the with
    # block still writes what was queued
    path = tmp_path / "int.h5"
    code = (f"import sys, threading, os, signal; sys.path[:0] = [{str(HERE)!r}, {str(ROOT / 'tools/record')!r}]\n"
            "import numpy as np, fpscope_record as fr, test_async as ta\n"
            "gate = ta.Gate(hold={0})\n"
            "threading.Timer(1.0, lambda: (os.kill(os.getpid(), signal.SIGINT), gate.open.set())).start()\n"
            "try:\n"
            f"    with fr.Recorder({str(path)!r}, 'int', on_written=gate, max_pending=1) as rec:\n"
            "        for s in range(3):\n            rec.record(s, ta.grads(s))\n"
            "except KeyboardInterrupt:\n    print('interrupted')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=HERE)
    assert p.returncode == 0 and p.stdout.strip() == "interrupted", p.stdout + p.stderr
    assert listed(path) == [0]
