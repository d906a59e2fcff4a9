"""A trace path swapped between the reader's check and libhdf5's open: the reader checks the file
it opened (a regular file, not a FIFO) and then hands libhdf5, which opens by name, that very
file (its /proc/self/fd link), so a FIFO renamed over the path in between is never opened. Before,
libhdf5 opened the path again and blocked forever on the FIFO.

The swap is made deterministic with gdb: a breakpoint on H5Fis_hdf5 (the first libhdf5 call
that opens the file, after the check) runs the rename, then the reader goes on. gdb follows the
contained worker process (fpscope/contain.hpp), which is where traces are read."""
import re
import shutil
import subprocess

import pytest

from conftest import run, write_trace

GDB = shutil.which("gdb")


def under_gdb(fpscope, cwd, swap, *args):
    """Runs fpscope with `swap` (a shell command) run at the breakpoint; (inferior's exit code,
    what it printed, whether the breakpoint was hit)."""
    if GDB is None:
        pytest.fail("gdb is missing (tools/setup.sh installs it)")
    cmd = [GDB, "-q", "-batch", "-nx", "-ex", "set breakpoint pending on", "-ex", "set follow-fork-mode child",
           "-ex", "set detach-on-fork off", "-ex", "set schedule-multiple on",
           "-ex", "break H5Fis_hdf5", "-ex", "run", "-ex", f"shell {swap}", "-ex", "delete", "-ex", "continue", "-ex", "inferior 1", "-ex", "continue",
           "--args", fpscope.path, *args]
    try:
        p = run(cmd, timeout=90, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fpscope {' '.join(args)} hung after the path was swapped for a FIFO")
    out = p.stdout + p.stderr
    # The parent (inferior 1) is fpscope itself; the worker it forked is inferior 2.
    codes = dict(re.findall(r"\[Inferior (\d+) \(process \d+\) exited (normally|with code \d+)\]", out))
    assert "1" in codes, out
    code = 0 if codes["1"] == "normally" else int(codes["1"].split()[-1])
    return code, out, "hit Breakpoint 1" in out


@pytest.fixture
def trace(tmp_path):
    import numpy as np
    write_trace(tmp_path / "t.h5", [{"tensors": {"w": np.linspace(-1, 1, 64, dtype=np.float32)}}])
    return tmp_path


def test_fifo_renamed_over_a_trace_that_was_moved_away(fpscope, trace):
    # The checked file lives on under another name: the reader reads it.
    code, out, hit = under_gdb(fpscope, trace, "mv t.h5 kept.h5 && mkfifo t.h5", "replay", "t.h5")
    assert hit, out
    assert code == 0, out
    assert "fpscope: error" not in out
    assert "steps" in out.lower() or "step" in out.lower(), out


def test_fifo_renamed_over_a_trace(fpscope, trace):
    # The checked file is gone (renamed over): one clear line, no hang.
    code, out, hit = under_gdb(fpscope, trace, "mkfifo f && mv f t.h5", "replay", "t.h5")
    assert hit, out
    assert code == 1, out
    assert "t.h5: the file was replaced while it was being opened" in out, out
