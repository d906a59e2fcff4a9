"""Issue 19 items 2, 3 and 4: outputs (convert -o, hist/replay --plot) never replace a device
node, a FIFO or a directory, write through a symlink to a regular file, never follow a planted
symlink at a temporary name, and never overwrite their own input (docs/output.md). Device nodes,
FIFOs and links are made in tmp_path (mknod as root): the real /dev is never touched."""
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, make_device

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "datasets" / "traces" / "digits-mlp.h5"


@pytest.fixture
def x(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.linspace(-3, 3, 10000, dtype=np.float32))
    return path


# Every command that writes a file, with OUT where the output goes.
WRITERS = {
    "convert": lambda x, out: ["convert", x, "--to", "e4m3", "-o", out],
    "hist --plot": lambda x, out: ["hist", x, "--plot", out],
    "replay --plot": lambda x, out: ["replay", TRACE, "--steps", "0:10", "--plot", out],
}


def out_name(command, stem):
    return stem + (".npy" if command == "convert" else ".svg")


@pytest.mark.parametrize("command", WRITERS)
def test_a_device_node_is_refused_and_stays_a_device(fpscope, x, tmp_path, command):
    node = tmp_path / out_name(command, "null")
    make_device(node, 1, 3)  # a /dev/null of our own
    link = tmp_path / out_name(command, "to-null")
    link.symlink_to(node)
    for target in (node, link):
        p = fpscope.run(*WRITERS[command](x, target))
        assert_one_line_error(p, str(target), "not a regular file", status=1)
        assert stat.S_ISCHR(os.stat(node).st_mode) and os.stat(node).st_rdev == os.makedev(1, 3)
    assert link.is_symlink()


@pytest.mark.parametrize("command", WRITERS)
def test_a_fifo_and_a_directory_are_refused_without_blocking(fpscope, x, tmp_path, command):
    fifo = tmp_path / out_name(command, "fifo")
    os.mkfifo(fifo)
    directory = tmp_path / out_name(command, "dir")
    directory.mkdir()
    for target, words in ((fifo, "not a regular file"), (directory, "directory")):
        p = fpscope.run(*WRITERS[command](x, target))  # a blocked open would hang: the fixture times out
        assert_one_line_error(p, str(target), words, status=1)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and directory.is_dir() and not any(directory.iterdir())


@pytest.mark.parametrize("command", WRITERS)
def test_a_symlink_to_a_file_is_written_through(fpscope, x, tmp_path, command):
    real = tmp_path / out_name(command, "run7")
    real.write_bytes(b"old")
    link = tmp_path / out_name(command, "latest")
    link.symlink_to(real.name)
    p = fpscope.run(*WRITERS[command](x, link))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == real.name
    assert real.read_bytes() != b"old" and real.stat().st_size > 100
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(["x.npy", real.name, link.name])


def test_a_dangling_symlink_is_refused(fpscope, x, tmp_path):
    link = tmp_path / "out.npy"
    link.symlink_to(tmp_path / "nowhere" / "y.npy")
    assert_one_line_error(fpscope.run("convert", x, "--to", "e4m3", "-o", link), str(link), status=1)
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_planted_symlinks_at_temporary_names_are_never_followed(fpscope, x, tmp_path):
    # The old writer opened OUT.tmp.<pid> with O_CREAT|O_TRUNC: links planted at the next pids'
    # names made it overwrite their target. Plant them for the next 300 pids.
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "y.npy"
    last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    planted = []
    for pid in range(last + 1, last + 301):
        link = tmp_path / f"y.npy.tmp.{pid}"
        link.symlink_to(victim)
        planted.append(link.name)
    for _ in range(3):
        p = fpscope.run("convert", x, "--to", "e4m3", "-o", out)
        assert p.returncode == 0, p.stderr
    assert victim.read_bytes() == b"precious"
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(["x.npy", "y.npy", "victim", *planted])
    assert np.load(out).dtype == np.uint8


def test_the_output_is_never_the_input(fpscope, x, tmp_path):
    before = x.read_bytes()
    os.link(x, tmp_path / "hard.npy")
    (tmp_path / "soft.npy").symlink_to("x.npy")
    (tmp_path / "sub").mkdir()
    for out in (x, "./x.npy", tmp_path / "sub" / ".." / "x.npy", tmp_path / "hard.npy", tmp_path / "soft.npy"):
        p = fpscope.run("convert", x, "--to", "e4m3", "-o", out, cwd=tmp_path)
        assert_one_line_error(p, "it is the input file", status=1)
        assert x.read_bytes() == before
    # A trace being replayed is an input too.
    copy = tmp_path / "t.svg"
    copy.write_bytes(TRACE.read_bytes())
    p = fpscope.run("replay", copy, "--steps", "0:3", "--plot", copy)
    assert_one_line_error(p, "it is the input file", status=1)
    assert copy.read_bytes() == TRACE.read_bytes()
