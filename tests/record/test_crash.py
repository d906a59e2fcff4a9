"""Nothing recorded is lost when the recording process is killed.

- test_sigkill: a real torch training loop recording every step is killed (SIGKILL) at random
  moments; every step it had reported recorded must read back whole and bit for bit equal to
  a clean run's, and nothing else may be in the file but at most the step it was linking.
- test_every_crash_point: the same claim at *every* write the recorder makes, exactly: the
  writes of a run are logged (writelog.c, preloaded) and the file is rebuilt as it stands after
  each one (and after each page of a multi-page rewrite: a kill can cut a write there), then
  checked. This is what found that plain "flush after each step" is not enough (see
  docs/trace.md, "Writing safely").
"""
import functools
import os
import random
import signal
import subprocess
import sys
import time

import h5py
import pytest

import crashlog
import tracecheck

CHILD = crashlog.HERE / "record_child.py"


def clean_run(tmp_path, kind, steps, extra=()):
    path = tmp_path / f"clean-{kind}.h5"
    subprocess.run([sys.executable, str(CHILD), str(path), "--kind", kind, "--steps", str(steps), *extra], check=True,
                   capture_output=True, timeout=300)
    with h5py.File(path, "r") as f:
        tracecheck.check_trace(f)
        return tracecheck.digest(f)


@pytest.mark.parametrize("extra", [[], ["--operands"]], ids=["gradients", "gemm-operands"])
def test_sigkill(tmp_path, extra):
    steps = 60
    reference = clean_run(tmp_path, "torch", steps, extra)
    assert len(reference) == steps
    if extra:  # the operands are there: every 2nd step, 3 Linear layers x X, W, dY
        names = {link: [x for x in content if isinstance(x, str)] for link, content in reference.items()}
        assert all(sum(":" in n for n in ns) == (9 if int(link) % 2 == 0 else 0) for link, ns in names.items()), names
    rng = random.Random(20240501)
    killed_mid_run = 0
    for run in range(5):
        path = tmp_path / f"killed{run}.h5"
        p = subprocess.Popen([sys.executable, str(CHILD), str(path), "--kind", "torch", "--steps", str(steps), *extra],
                             stdout=subprocess.PIPE, text=True)
        reported = []
        try:
            while len(reported) < 3:  # a few steps recorded, then kill at a random moment
                line = p.stdout.readline()
                assert line, "the recording process ended early"
                reported.append(int(line.split()[1]))
            time.sleep(rng.uniform(0, 0.25))
            os.kill(p.pid, signal.SIGKILL)
            rest = p.stdout.read()
        finally:
            p.kill()
            p.wait()
        reported += [int(line.split()[1]) for line in rest.splitlines()]
        killed_mid_run += p.returncode == -signal.SIGKILL and len(reported) < steps
        with h5py.File(path, "r") as f:
            tracecheck.check_trace(f)
            got = tracecheck.digest(f)
        listed = sorted(int(s) for s in got)
        assert set(reported) <= set(listed), f"run {run}: reported steps missing from the file"
        assert listed == list(range(len(listed))) and len(listed) <= len(reported) + 1, listed
        for link, content in got.items():
            assert content == reference[link], f"run {run}: step {link} differs from the clean run"
    assert killed_mid_run >= 3  # the kills did land mid-run


@pytest.mark.parametrize("marks_by", ["written", "flush"])
def test_every_crash_point(tmp_path, marks_by):
    """marks_by "written": the steps on_written reported (the background writer's own account)
    must be in the file, and at most one more; "flush": the steps recorded before a flush() (or
    close()) returned must be, and at most the 3 recorded since the last flush more."""
    shim = crashlog.build_shim(tmp_path)
    if shim is None:
        pytest.skip("no C compiler for the write-logging shim")
    path, log = tmp_path / "logged.h5", tmp_path / "writes.log"
    crashlog.run_logged(shim, [CHILD, path, "--kind", "numpy", "--steps", "10", "--marks", log,
                               "--marks-by", marks_by], path, log)
    with h5py.File(path, "r") as f:
        tracecheck.check_trace(f)
        reference = tracecheck.digest(f)
    assert len(reference) == 10
    assert reference == clean_run(tmp_path, "numpy", 10)  # logging changed nothing
    points = list(crashlog.crash_points(log, torn=True))
    assert len(points) > 100 and any("torn" in p[4] for p in points)
    assert sorted(a for t, a, _ in crashlog.records(log) if t == b"M") == list(range(10))  # each step marked once
    extra = 1 if marks_by == "written" else 3
    problems = crashlog.check_all(log, reference, tmp_path, torn=True,
                                  check=functools.partial(crashlog.check_image, extra=extra))
    # Before the constructor's first flush ends the file may not open (no step can be lost then).
    late = [p for p in problems if p[2]]
    assert not late, "\n".join(f"after write #{k} ({desc}), steps {marks[-3:]} done: {what}"
                               for k, desc, marks, what in late[:20])


def test_naive_writer_is_caught(tmp_path):
    # The negative control: the same steps written the plain way (group created in /steps, filled,
    # @complete set, file flushed) do leave damaged files at some crash points, and the check
    # above finds them.
    shim = crashlog.build_shim(tmp_path)
    if shim is None:
        pytest.skip("no C compiler for the write-logging shim")
    path, log = tmp_path / "naive.h5", tmp_path / "naive.log"
    crashlog.run_logged(shim, [CHILD, path, "--kind", "numpy", "--steps", "10", "--naive", "--marks", log], path, log)
    with h5py.File(path, "r") as f:
        tracecheck.check_trace(f)
        reference = tracecheck.digest(f)
    problems = crashlog.check_all(log, reference, tmp_path, stop=1)
    assert [p for p in problems if p[2]], "the crash-point check found nothing wrong with the naive writer"
