"""Makes tests/trace/corpus/hdf5-hang-vlen-heap.h5: a real trace, cut by a simulated SIGKILL, on
which libhdf5 (1.10) loops forever.

    .venv/bin/python tests/record/make_hang_trace.py OUT.h5

How: the trace recorder (tools/record/fpscope_record.py) with rule 4 of docs/trace.md ("Writing
safely") taken away (variable-length string attributes, h5py's default, instead of fixed-length
ones), no padding while flushing (so that no crash point carries a sparse 4 MiB tail) and a fixed
producer string records 4 small steps of raw gradients (deterministic numpy; a long model
description, about 1.5 KB) under the write-logging shim (writelog.c). The file is rebuilt at
every crash point, as test_crash.py does (crashlog.py: after each write, and after each page of a
multi-page rewrite), and each is read in a forked process with an alarm: the first crash point
at which h5py does not finish reading the root's attributes in 5 s is written to OUT.

What it finds (HDF5 1.10.8, h5py 3.7; about 7 s): while step 2 is recorded (steps 0 and 1
done), a flush rewrites the global heap collection holding the strings (4 KiB at offset 2048)
and the write is cut at the page boundary at 4096: the first half new, the second half still
the zeros it was allocated with. The new free-space object's header at 4088 straddles the cut:
its index (0) was written, its size (past 4096) reads 0, and the heap's cache deserializer
steps through the objects by their sizes: by 0 bytes, forever (H5Aread -> H5T__conv_vlen ->
H5HG_read -> H5HG__protect -> H5AC_protect -> H5C_protect -> the deserializer, at 100% CPU).
h5py and fpscope::trace_reader (reading the `producer` attribute as it opens the file) hang on
it.
"""
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools" / "record"))
STEPS = 4
# A long model description (a run's whole configuration, as a recorder user might give it): the
# strings then reach the heap's page boundary within two steps and the file stays small (29 KB).
MODEL = "make_hang_trace.py, numpy gradients, config: " + ", ".join(f"option_{i:03d}=value_{i:03d}" for i in range(66))


def write(path):
    """The logged process: the recorder, patched as above, writing STEPS steps."""
    import fpscope_record as fr

    fr._text = lambda obj, name, text: obj.attrs.__setitem__(name, text)  # variable-length strings
    fr.PAD = 0
    fr._producer = lambda: "make_hang_trace.py"
    rng = np.random.default_rng(0)
    marks = os.open(os.environ["FPSCOPE_WRITELOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # as record_child.py
    with fr.Recorder(str(path), MODEL, created="2000-01-01T00:00:00Z", dtype=None, mode="raw",
                     max_steps=STEPS) as rec:
        for step in range(STEPS):
            g = {f"layer{i}/weight": (rng.standard_normal(4 * (i + 1)) * 2.0 ** -rng.integers(0, 30)).astype(np.float32)
                 for i in range(2)}
            special = rng.standard_normal(64).astype(np.float32)
            special[:5] = [0.0, -0.0, np.inf, np.nan, 1e-42]
            g["special%"] = special
            g["empty"] = np.zeros((0, 3), np.float32)
            g["half"] = (rng.standard_normal((4, 5)) * 1e-3).astype(np.float16)
            g["bf16"] = (rng.standard_normal(33) * 1e-2).astype(np.float32).astype(np.float16)
            rec.record(step, g, loss=step / 3, lr=0.05)
            os.write(marks, b"M" + struct.pack("<QQ", step, 0))


def reads(path, timeout=5):
    """True when h5py reads the root's attributes of path within timeout seconds (forked)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        signal.alarm(timeout)
        try:
            import h5py

            with h5py.File(path, "r") as f:
                dict(f.attrs)
        except BaseException:  # noqa: BLE001 (an error is not a hang)
            pass
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        return write(Path(sys.argv[2]))
    import tempfile

    import crashlog

    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shim = crashlog.build_shim(tmp)
        path, log = tmp / "run.h5", tmp / "run.log"
        env = dict(os.environ, LD_PRELOAD=str(shim), FPSCOPE_WRITELOG=str(log), FPSCOPE_WRITELOG_TARGET=str(path))
        subprocess.run([sys.executable, __file__, "--write", str(path)], env=env, check=True)
        probe = tmp / "probe.h5"
        for k, image, size, marks, desc in crashlog.crash_points(log, torn=True):
            with open(probe, "wb") as f:
                f.write(image[:size])
                f.truncate(size)
            if not reads(probe):
                probe.replace(out)
                print(f"{out}: crash point {k} ({desc}; steps {sorted(marks)[-3:]} recorded): "
                      f"{size} bytes, HDF5 hangs reading it")
                return 0
    print("no crash point makes HDF5 hang", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
