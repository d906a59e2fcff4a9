"""The C++ fpscope::trace_writer loses nothing when its process is killed, at every write it makes.

The same harness as test_crash.py (writelog.c preloaded logs every write of the run; the file is
rebuilt as it stands after each write, and after each page of a multi-page rewrite, and checked
in a forked process), run on tests/trace/write_steps.cpp (fpscope_trace_write_steps), which
writes 9 deterministic steps through trace_writer with its default max_steps (4096: /steps'
header, about 160 KiB, is rewritten at each link, and a kill can cut that write at any of its
pages). Each crash point is read twice:

- by h5py + tracecheck.digest (crashlog.check_image): the file opens, lists every step whose
  end_step() had returned and at most one more, each equal to the clean run's bit for bit;
- by the C++ reader (fpscope::trace_reader, `fpscope_trace_write_steps --serve`): the same steps,
  each hashing (attributes, tensor names, metadata, values' bits, histograms) as in the clean
  run, and no step reported incomplete.

From the moment the writer's constructor returns, every crash point must pass both. The negative
control: the same steps written the way trace_writer did before (--plain) are caught damaging
the file at some crash points by the very same check.

ctest (record.crash_trace_writer) passes the helper's path in FPSCOPE_WRITE_STEPS; run by hand:
    FPSCOPE_WRITE_STEPS=build/tests/trace/fpscope_trace_write_steps .venv/bin/python -m pytest -q \
        tests/record/test_crash_trace_writer.py
or, for the counts docs/trace.md quotes (every crash point of both schemes, nothing stopped early):
    FPSCOPE_WRITE_STEPS=... .venv/bin/python tests/record/test_crash_trace_writer.py
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import pytest

import crashlog
import tracecheck

OPENED = (1 << 64) - 1  # the helper's mark: trace_writer's constructor returned
STEPS = 9


def helper():
    exe = os.environ.get("FPSCOPE_WRITE_STEPS")
    if not exe:
        pytest.skip("FPSCOPE_WRITE_STEPS (the fpscope_trace_write_steps helper) not set")
    assert Path(exe).is_file(), f"FPSCOPE_WRITE_STEPS={exe} does not exist (build fpscope_trace_write_steps)"
    return exe


def parse(out, status):
    """--read's output and exit status -> ({step link: hash}, incomplete count) or a problem."""
    if status == "3":
        return f"C++ reader: {out.strip()}"
    if status == "signal 14":
        return "the C++ reader hung (killed by its alarm)"
    if status != "0":
        return f"the C++ reader crashed (status {status})"
    steps, incomplete = {}, None
    for line in out.splitlines():
        w = line.split()
        if w[0] == "step":
            steps[w[1]] = w[2]
        elif w[0] == "incomplete":
            incomplete = int(w[1])
    return steps, incomplete


def cpp_read(exe, path):
    """({step link: hash}, incomplete count) through fpscope::trace_reader, or a problem string."""
    p = subprocess.run([exe, "--read", str(path)], capture_output=True, text=True, timeout=60)
    return parse(p.stdout, str(p.returncode))


class Server:
    """`fpscope_trace_write_steps --serve`: one process reading every crash point (forking a
    reader for each) instead of one started per point. Used from the forked checks of
    crashlog.check_all, one at a time; a check killed mid-answer leaves lines the next skips."""

    def __init__(self, exe, timeout):
        self.p = subprocess.Popen([exe, "--serve", str(timeout)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, path):
        ident = str(os.getpid())  # each check is a process of its own
        os.write(self.p.stdin.fileno(), f"{ident} {path}\n".encode())
        buf, out = b"", []
        while True:
            while b"\n" not in buf:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    return "the C++ reader server died"
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            line = line.decode(errors="replace")
            if line.startswith(f"end {ident} "):
                return parse("\n".join(out), line[len(f"end {ident} "):])
            if line.startswith("end "):
                out = []  # the rest of an earlier, killed check's answer
            else:
                out.append(line)

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def write(exe, tmp, name, plain=False, log=None, shim=None):
    """Runs the helper (logged when shim is given); returns (path, h5py digest, C++ hashes)."""
    path = Path(tmp) / name
    # The 2-chunk tensor (2^20 + 5 elements) in the last step: read back at every later crash
    # point it would cost 60 ms each (HDF5's shuffle filter), 4/5 of the run.
    args = [exe, str(path), "--steps", str(STEPS), "--big-step", str(STEPS - 1)] + (["--plain"] if plain else [])
    if shim is not None:
        env = dict(os.environ, LD_PRELOAD=str(shim), FPSCOPE_WRITELOG=str(log), FPSCOPE_WRITELOG_TARGET=str(path))
        subprocess.run(args + ["--marks", str(log)], env=env, check=True, capture_output=True, timeout=120)
    else:
        subprocess.run(args, check=True, capture_output=True, timeout=120)
    with h5py.File(path, "r") as f:
        tracecheck.check_trace(f)  # the whole format, histograms recomputed from the values
        digest = tracecheck.digest(f)
    hashes = cpp_read(exe, path)
    assert not isinstance(hashes, str), hashes
    assert hashes[1] == 0 and len(hashes[0]) == STEPS
    return path, digest, hashes[0]


def checker(server, strict):
    """A crashlog.check_all check: h5py, then the C++ reader, against the clean run's
    (digest, hashes). strict: no step may be reported incomplete either."""

    def check(image, size, marks, reference, path):
        digest, hashes = reference
        marks = marks - {OPENED}
        res = crashlog.check_image(image, size, marks, digest, path)  # writes the file at path
        if res != "ok":
            return res
        got = server.read(path)
        if isinstance(got, str):
            return got
        steps, incomplete = got
        listed = {int(s) for s in steps}
        if not marks <= listed:
            return f"C++ reader: steps {sorted(marks - listed)} were complete but are missing"
        if len(listed - marks) > 1:
            return f"C++ reader: unexpected steps {sorted(listed - marks)}"
        for s, h in steps.items():
            if h != hashes[s]:
                return f"C++ reader: step {s} differs from the clean run"
        if strict and incomplete:
            return f"C++ reader: {incomplete} step(s) reported incomplete"
        return "ok"

    return check


def crash_run(exe, tmp, plain, stop=None, timeout=20):
    """Writes the steps under the write logger and checks every crash point; returns
    (crash points, those that count, problems that count, all problems): problems are
    (index, desc, marks, what); they count from the constructor's return (new scheme) or the
    first step's (plain: its constructor never flushed)."""
    shim = crashlog.build_shim(tmp)
    if shim is None:
        pytest.skip("no C compiler for the write-logging shim")
    name = "plain" if plain else "new"
    log = Path(tmp) / f"{name}.log"
    _, digest, hashes = write(exe, tmp, f"{name}-logged.h5", plain, log, shim)
    _, clean_digest, clean_hashes = write(exe, tmp, f"{name}-clean.h5", plain)
    assert (digest, hashes) == (clean_digest, clean_hashes)  # logging changed nothing
    counts = (lambda marks: bool(marks)) if plain else (lambda marks: OPENED in marks)
    points = counted = 0
    for _, _, _, marks, _ in crashlog.crash_points(log, torn=True):
        points += 1
        counted += counts(marks)
    server = Server(exe, max(1, timeout // 2))  # the C++ read gets half of the check's time
    try:
        problems = crashlog.check_all(log, (digest, hashes), tmp, torn=True, stop=stop,
                                      check=checker(server, not plain), timeout=timeout)
    finally:
        server.close()
    late = [p for p in problems if counts(set(p[2]))]
    return points, counted, late, problems


def report(late):
    return "\n".join(f"after write #{k} ({desc}), steps {[m for m in marks if m != OPENED][-3:]} done: {what}"
                     for k, desc, marks, what in late[:20])


def test_every_crash_point(tmp_path):
    exe = helper()
    points, counted, late, _ = crash_run(exe, tmp_path, plain=False)
    assert counted > 300 and points > counted
    assert not late, f"{len(late)} of {counted} crash points bad:\n" + report(late)


def test_plain_writer_is_caught(tmp_path):
    # The negative control: trace_writer's old sequence leaves damaged files, and the same check
    # finds them (stopped at the first few: a damaged file can make HDF5 hang until the timeout).
    exe = helper()
    _, _, late, _ = crash_run(exe, tmp_path, plain=True, stop=3, timeout=5)
    assert late, "the crash-point check found nothing wrong with the plain writer"


if __name__ == "__main__":  # the counts for docs/trace.md: every crash point of both schemes
    exe = helper()
    for plain in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            points, counted, late, problems = crash_run(exe, tmp, plain, timeout=5)
            kinds = {}
            for p in late:
                kind = p[3].split(":")[0][:60]
                kinds[kind] = kinds.get(kind, 0) + 1
            print(f"{'plain' if plain else 'new'}: {points} crash points, {len(problems)} bad; after "
                  f"{'the first step' if plain else 'the constructor'} returned: {len(late)} bad of {counted}")
            for kind, n in sorted(kinds.items(), key=lambda x: -x[1]):
                print(f"    {n:4d}  {kind}")
    sys.exit(0)
