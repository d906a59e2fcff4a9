"""Item 10: a FIFO (or a directory) given as an input is refused at once, with a message naming
what it is, by every input path (the library's one input opener): before, convert, hist and dot
blocked forever in open() and replay said "no such file"."""
import os
import subprocess

import numpy as np
import pytest

from conftest import assert_one_line_error, run


@pytest.fixture
def fifos(tmp_path):
    for name in ("x.npy", "t.h5"):
        os.mkfifo(tmp_path / name)
    np.save(tmp_path / "ok.npy", np.ones(4, np.float32))
    return tmp_path


def quick(fpscope, *args):
    try:
        return run([fpscope.path, *args], timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fpscope {' '.join(map(str, args))} blocked on a FIFO")


@pytest.mark.parametrize("args", [
    ["convert", "{d}/x.npy", "--to", "e4m3", "-o", "{d}/out.npy"],
    ["hist", "{d}/x.npy"],
    ["hist", "{d}/t.h5"],
    ["dot", "{d}/x.npy", "{d}/ok.npy"],
    ["dot", "{d}/ok.npy", "{d}/x.npy"],
    ["replay", "{d}/t.h5"],
])
def test_fifo_input_is_refused_not_waited_on(fpscope, fifos, args):
    p = quick(fpscope, *[a.format(d=fifos) for a in args])
    assert_one_line_error(p, "FIFO", status=1)
    assert "no such file" not in p.stderr
    assert sorted(os.listdir(fifos)) == ["ok.npy", "t.h5", "x.npy"]


@pytest.mark.parametrize("cmd", [["hist"], ["convert", "--to", "e4m3", "-o", "{d}/out.npy"], ["replay"]])
def test_directory_input_says_directory(fpscope, tmp_path, cmd):
    (tmp_path / "d.npy").mkdir()
    args = [a.format(d=tmp_path) for a in cmd]
    p = quick(fpscope, args[0], tmp_path / "d.npy", *args[1:])
    assert_one_line_error(p, "directory")
    assert "no such file" not in p.stderr


def test_python_trace_names_fifo_and_directory(tmp_path):
    fpscope = pytest.importorskip("fpscope")
    os.mkfifo(tmp_path / "t.h5")
    (tmp_path / "dir.h5").mkdir()
    for path, word in ((tmp_path / "t.h5", "FIFO"), (tmp_path / "dir.h5", "directory")):
        with pytest.raises(Exception) as e:
            fpscope.Trace(str(path))
        assert word.lower() in str(e.value).lower() and "no such file" not in str(e.value)
