"""Item 9: a small trace declaring a huge values dataset it does not store is refused at once:
every dataset's declared size is checked against what is stored (allocated chunks, their sizes,
the file's size) before anything is read. Before, a 22 KB file declaring 2^40 values ran replay
for an hour and hist for hours (reading fill values)."""
import os
import subprocess

import h5py
import numpy as np
import pytest

from conftest import assert_one_line_error, run

COUNT = 1 << 40


def write_trace(path, make_values, count=COUNT):
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["fpscope_trace_version"] = np.int32(1)
        f.attrs["producer"] = "hostile test"
        f.attrs["model"] = "m"
        steps = f.create_group("steps", track_order=True)
        s = steps.create_group("00000000", track_order=True)
        for k, v in (("step", np.int64(0)), ("loss", 1.0), ("lr", 1.0), ("loss_scale", 1.0)):
            s.attrs[k] = v
        t = s.create_group("tensors", track_order=True).create_group("w")
        t.attrs["dtype"] = "float32"
        t.attrs["shape"] = np.array([count], np.int64)
        t.attrs["count"] = np.uint64(count)
        for k in ("zeros", "infs", "nans"):
            t.attrs[k] = np.uint64(0)
        t.attrs["amax"] = 1.0
        make_values(t)
        s.attrs["complete"] = np.int8(1)


LAYOUTS = {
    "chunked-none-stored": lambda g: g.create_dataset("values", shape=(COUNT,), dtype="<f4", chunks=(1 << 20,)),
    "chunked-one-per-value": lambda g: g.create_dataset("values", shape=(COUNT,), dtype="<f4", chunks=(1,)),
    "deflate-none-stored": lambda g: g.create_dataset("values", shape=(COUNT,), dtype="<f4", chunks=(1 << 16,),
                                                      shuffle=True, compression="gzip"),
    "contiguous-unallocated": lambda g: g.create_dataset("values", shape=(COUNT,), dtype="<f4"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("cmd", [["replay", "-q"], ["hist", "-q"]])
def test_declared_but_not_stored_is_refused_at_once(fpscope, tmp_path, layout, cmd):
    t = tmp_path / "t.h5"
    write_trace(t, LAYOUTS[layout])
    assert os.path.getsize(t) < 1 << 20
    try:
        p = run([fpscope.path, cmd[0], t, *cmd[1:]], timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{cmd[0]} of a {os.path.getsize(t)}-byte trace declaring 2^40 values ran on")
    assert_one_line_error(p, str(t), "stor", status=1)


def test_partly_stored_chunks_are_refused(fpscope, tmp_path):
    # 4 chunks declared, one written: the rest would read as fill values.
    t = tmp_path / "t.h5"
    def some(g):
        d = g.create_dataset("values", shape=(4096,), dtype="<f4", chunks=(1024,))
        d[:1024] = 1.0
    write_trace(t, some, count=4096)
    p = run([fpscope.path, "hist", "-q", t], timeout=60)
    assert_one_line_error(p, str(t), "stor", status=1)


def test_well_formed_trace_still_reads(fpscope, tmp_path):
    t = tmp_path / "t.h5"
    def full(g):
        g.create_dataset("values", data=np.ones(5000, np.float32), chunks=(1024,), shuffle=True, compression="gzip")
    write_trace(t, full, count=5000)
    p = run([fpscope.path, "hist", "-q", "--json", t], timeout=60)
    assert p.returncode == 0, p.stderr
    def contiguous(g):
        g.create_dataset("values", data=np.ones(5000, np.float32))
    write_trace(t, contiguous, count=5000)
    p = run([fpscope.path, "hist", "-q", "--json", t], timeout=60)
    assert p.returncode == 0, p.stderr
