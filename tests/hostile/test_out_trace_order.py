"""Issue 19 item 19: a trace's steps must be the steps of a run, in order. A middle step with
complete=0, @step values out of order, repeated, negative (INT64_MIN) or disagreeing with the
group's name were replayed silently; now each is one line naming the step (exit status 1), in
replay, hist and Python alike; a reversed --steps range is a usage error (exit status 2)."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_one_line_error, write_trace

INT64_MIN = np.int64(-(2**63))

CASES = {
    "middle step complete=0": ([{}, {"attrs": {"complete": np.int8(0)}}, {}],
                               ["step 00000001", "'complete' is 0, not 1", "later steps follow"]),
    "out of order": ([{"group": "00000006", "attrs": {"step": np.int64(6)}},
                      {"group": "00000002", "attrs": {"step": np.int64(2)}}],
                     ["step 00000002", "@step 2 comes after step 6", "out of order"]),
    "repeated @step": ([{"attrs": {"step": np.int64(0)}}, {"attrs": {"step": np.int64(0)}}],
                       ["step 00000001", "disagrees with its @step 0"]),
    "INT64_MIN": ([{"attrs": {"step": INT64_MIN}}], ["step 00000000", f"@step {INT64_MIN} is negative"]),
    "name disagrees": ([{}, {"group": "00000005", "attrs": {"step": np.int64(7)}}],
                       ["step 00000005", "disagrees with its @step 7", "named 00000007"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
@pytest.mark.parametrize("command", [["replay"], ["hist"], ["replay", "--json"]])
def test_inconsistent_steps_are_one_line(fpscope, tmp_path, case, command):
    steps, words = CASES[case]
    path = write_trace(tmp_path / "t.h5", steps)
    p = fpscope.run(command[0], path, *command[1:])
    assert_one_line_error(p, *words, status=1)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_python_refuses_them_too(tmp_path, case):
    steps, words = CASES[case]
    path = write_trace(tmp_path / "t.h5", steps)
    code = "import fpscope, sys\ntry:\n    fpscope.Trace(sys.argv[1])\nexcept ValueError as e:\n    print(e)\n    sys.exit(3)\n"
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
    for w in words:
        assert w in p.stdout, p.stdout


def test_a_last_step_with_complete_0_is_noted_not_replayed(fpscope, tmp_path):
    path = write_trace(tmp_path / "t.h5", [{}, {}, {"attrs": {"complete": np.int8(0)}}])
    p = fpscope.run("replay", path)
    assert p.returncode == 0, p.stderr
    assert "note: an incomplete last step was skipped" in p.stdout and "'complete' is 0, not 1" in p.stdout, p.stdout
    assert "2 steps replayed" in p.stdout, p.stdout


def test_consistent_steps_with_gaps_still_replay(fpscope, tmp_path):
    """The negative control: steps recorded every 10 steps are what the writers make."""
    steps = [{"group": f"{s:08d}", "attrs": {"step": np.int64(s)}} for s in (0, 10, 20, 130)]
    p = fpscope.run("replay", write_trace(tmp_path / "t.h5", steps))
    assert p.returncode == 0, p.stderr
    assert "4 steps replayed" in p.stdout, p.stdout


@pytest.mark.parametrize("command", ["replay", "hist"])
def test_a_reversed_steps_range_is_a_usage_error(fpscope, tmp_path, command):
    path = write_trace(tmp_path / "t.h5", [{}] * 6)
    p = fpscope.run(command, path, "--steps", "5:2")
    assert_one_line_error(p, "--steps", "5:2", "empty", status=2)


def test_the_writer_refuses_what_the_reader_refuses(tmp_path):
    """fpscope::trace_writer (Python's TraceWriter) cannot make such a trace in the first place."""
    code = """
import sys, numpy as np, fpscope
x = {"w": np.ones(4, np.float32)}
with fpscope.TraceWriter(sys.argv[1], overwrite=True) as w:
    w.step(5, 1.0, 0.1, tensors=x)
    for bad in (5, 4, -1, -(2**63)):
        try:
            w.step(bad, 1.0, 0.1, tensors=x)
        except ValueError as e:
            print(e)
        else:
            raise SystemExit(f"step {bad} accepted")
    w.step(6, 1.0, 0.1, tensors=x)
print(len(fpscope.Trace(sys.argv[1])))
"""
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.h5")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    lines = p.stdout.splitlines()
    assert "step 5 after step 5: steps must be recorded in increasing order" in lines[0], lines
    assert "step 4 after step 5" in lines[1] and "step -1 is negative" in lines[2], lines
    assert lines[3].endswith(f"step {-(2**63)} is negative") and lines[4] == "2", lines
