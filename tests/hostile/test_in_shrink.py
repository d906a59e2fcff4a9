"""Item 6: an .npy input truncated by another process while fpscope reads it (through its memory
map) is one error line naming the file, not a SIGBUS kill, and leaves no output. The reader is
stopped (SIGSTOP) once the input is mapped, the file truncated to its header, then resumed."""
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import assert_one_line_error

N = 16 << 20  # float32 values: 64 MiB, far more than is read before the reader is stopped


def mapped(pid, path):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(line.rstrip().endswith(str(path)) for line in f)
    except (FileNotFoundError, ProcessLookupError):
        return False


def shrink_while_read(fpscope, path, args):
    proc = subprocess.Popen([fpscope.path, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while not mapped(proc.pid, path):
        assert proc.poll() is None, f"finished before its input was seen mapped: {proc.communicate()}"
        assert time.monotonic() < deadline, "the input was never mapped"
        time.sleep(0.0005)
    os.kill(proc.pid, signal.SIGSTOP)
    with open(path, "r+b") as f:
        f.truncate(128)  # the header only: every data page is gone
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("args", [
    ["convert", "{x}", "--to", "e4m3", "--chunk", "1", "--threads", "1", "-q", "-o", "{d}/out.npy"],
    ["hist", "{x}", "-q", "-j", "1", "--scales", "2^-60:2^60"],
    ["dot", "{x}", "{x}"],
])
def test_truncated_while_read_is_an_error(fpscope, tmp_path, args):
    x = tmp_path / "x.npy"
    np.save(x, np.arange(N, dtype=np.float32))
    assert os.path.getsize(x) == 128 + 4 * N
    p = shrink_while_read(fpscope, x, [a.format(x=x, d=tmp_path) for a in args])
    assert p.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert_one_line_error(p, str(x), "shrank", status=1)
    assert sorted(os.listdir(tmp_path)) == ["x.npy"]  # no output, no temporary
