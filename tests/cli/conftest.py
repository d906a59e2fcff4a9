"""Shared fixtures of the fpscope CLI tests: the binary (from $FPSCOPE_BIN) and how to run it."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def _binary():
    path = os.environ.get("FPSCOPE_BIN")
    if not path:
        pytest.exit("FPSCOPE_BIN is not set: run these tests through ctest, or point FPSCOPE_BIN at the "
                    "built fpscope binary", returncode=4)
    if not os.access(path, os.X_OK):
        pytest.exit(f"FPSCOPE_BIN={path} is not an executable", returncode=4)
    return path


class Fpscope:
    def __init__(self, path):
        self.path = path

    def run(self, *args, check=False, env=None, **kw):
        """Runs fpscope with args (str()-ed); returns the CompletedProcess (text)."""
        e = dict(os.environ)
        e.pop("NO_COLOR", None)
        e.update(env or {})
        p = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True, env=e, timeout=300,
                           **kw)
        if check and p.returncode != 0:
            raise AssertionError(f"fpscope {' '.join(map(str, args))} failed ({p.returncode}): {p.stderr}")
        return p

    def ok(self, *args, **kw):
        p = self.run(*args, check=True, **kw)
        assert p.stderr == "", p.stderr
        return p.stdout

    def json(self, *args):
        return json.loads(self.ok(*args))


@pytest.fixture(scope="session")
def fpscope():
    return Fpscope(_binary())


def assert_one_line_error(p, *words, status=None):
    """A failure: nonzero status, nothing on stdout, ONE stderr line with every word in it."""
    assert p.returncode != 0, f"expected a failure, got 0; stdout: {p.stdout!r}"
    if status is not None:
        assert p.returncode == status, (p.returncode, p.stderr)
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("fpscope: error: "), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    assert "terminate" not in p.stderr and "Aborted" not in p.stderr


def float32_tensor_attrs(group, x):
    """A float32 tensor's attributes in a trace (docs/trace.md): dtype, shape, count, amax (over
    the finite values) and the zero/inf/NaN counts of the array x."""
    import numpy as np
    group.attrs["dtype"] = "float32"
    group.attrs["shape"] = np.array(x.shape, np.int64)
    group.attrs["count"] = np.uint64(x.size)
    fin = x[np.isfinite(x)]
    group.attrs["amax"] = float(np.abs(fin).max()) if fin.size else 0.0
    group.attrs["zeros"] = np.uint64((x == 0).sum())
    group.attrs["infs"] = np.uint64(np.isinf(x).sum())
    group.attrs["nans"] = np.uint64(np.isnan(x).sum())


def nonempty(items):
    """items as a list, asserted non-empty: assertions in a loop over nothing prove nothing."""
    items = list(items)
    assert items, "nothing to check: the list is empty"
    return items


def assert_nothing_left(directory: Path, *keep):
    """Only `keep` remains in `directory`: no output file, no temporary file."""
    left = sorted(x.name for x in Path(directory).iterdir())
    assert left == sorted(keep), f"left behind: {left}"


def output_being_written(pid, directory):
    """The size of a file that process `pid` has open for writing in `directory` (an unnamed
    O_TMPFILE or a named temporary file alike), or None when there is none."""
    d = str(directory).rstrip("/") + "/"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return None
    for fd in fds:
        try:
            if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith(d):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(info.read().split("flags:")[1].split()[0], 8)
            if flags & os.O_ACCMODE != os.O_RDONLY:
                return os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return None


def wait_until_writing(proc, directory, min_bytes=1, timeout=30):
    """Waits until `proc` has written `min_bytes` to an output in `directory`; returns the size
    seen, or None when it never did (it finished or failed first, or the time ran out)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        size = output_being_written(proc.pid, directory)
        if size is not None and size >= min_bytes:
            return size
        time.sleep(0.002)
    return None


@pytest.fixture
def tmp(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
