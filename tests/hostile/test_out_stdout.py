"""Issue 19 item 12: standard output that cannot be written. A full device (a character device
made here with /dev/full's numbers, never the real node) is one line on stderr and exit status 1
in every subcommand and output mode; a reader that went away (`fpscope replay run.h5 | head`) is
a quiet end by SIGPIPE, as for any Unix tool, also when the caller left SIGPIPE ignored: never
"crashed", never a message."""
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, make_device

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "datasets" / "traces" / "digits-mlp.h5"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    np.save(d / "x.npy", np.linspace(-3, 3, 5000, dtype=np.float32))
    np.save(d / "a.npy", np.ones((64, 32), np.float32))
    np.save(d / "b.npy", np.ones((32, 64), np.float32))
    return d


# Every subcommand in each output mode: (args, stdin). {in} is the inputs' directory, {out} the
# test's own directory (convert's output), {trace} a shipped trace.
CASES = [
    ("formats", None), ("formats --json", None), ("formats --help", None), ("--version", None),
    ("cast 0.1 1e5 --to bf16", None), ("cast 0.1 --to bf16 --json", None),
    ("calc -f fp16 -o add", "3c00 3c00\n" * 2000),
    ("convert {in}/x.npy --to e4m3 -o {out}/y.npy -v", None),
    ("dot {in}/a.npy {in}/b.npy -f fp16", None), ("dot {in}/a.npy {in}/b.npy -f fp16 --json", None),
    ("hist {in}/x.npy", None), ("hist {in}/x.npy --json", None), ("hist {in}/x.npy --csv", None),
    ("hist {trace} --steps 0:20", None), ("hist {trace} --steps 0:20 --json", None),
    ("hist {trace} --steps 0:20 --csv", None),
    ("replay {trace}", None), ("replay {trace} --json", None), ("replay {trace} --csv", None),
    # fpscope recipes (issue 16)
    ("recipes {in}/x.npy", None), ("recipes {in}/x.npy --json", None), ("recipes {in}/x.npy --csv", None),
    ("recipes {trace} -r mxfp8", None),
]
IDS = [c[0].replace("{in}/", "").replace("{out}/", "").replace("{trace}", "TRACE") for c in CASES]


def resolve(case, d, tmp_path):
    args, stdin = case
    return [a.format(**{"in": d, "out": tmp_path, "trace": TRACE}) for a in args.split()], stdin


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_full_device_is_one_line_and_status_1(fpscope, inputs, tmp_path, case):
    full = tmp_path / "full"
    make_device(full, 1, 7)  # /dev/full's numbers, in tmp_path
    args, stdin = resolve(case, inputs, tmp_path)
    with open(full, "w") as out:
        p = subprocess.run([fpscope.path, *args], stdout=out, stderr=subprocess.PIPE, input=stdin, text=True, timeout=300)
    p.stdout = ""
    assert_one_line_error(p, "cannot write to standard output", "no space left on device", status=1)


def ignore_sigpipe():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_closed_pipe_is_a_quiet_end(fpscope, inputs, tmp_path, case, inherited):
    args, stdin = resolve(case, inputs, tmp_path)
    r, w = os.pipe()
    os.close(r)  # the reader has gone before the first write: every write meets a closed pipe
    try:
        p = subprocess.run([fpscope.path, *args], stdout=w, stderr=subprocess.PIPE, input=stdin, text=True, timeout=300,
                           restore_signals=inherited == "default",
                           preexec_fn=ignore_sigpipe if inherited == "ignored" else None)
    finally:
        os.close(w)
    # A shell shows -SIGPIPE as 141; `head` then sees nothing wrong.
    assert p.returncode in (0, -signal.SIGPIPE), (p.returncode, p.stderr)
    assert p.stderr == "", p.stderr


def test_replay_into_head_ends_quietly_every_time(fpscope, tmp_path):
    """The issue's own case, through a shell: `fpscope replay TRACE --csv | head -3`."""
    for mode in ("", "--csv", "--json"):
        p = subprocess.run(["bash", "-c", f'"$0" replay "$1" {mode} | head -3; echo "status ${{PIPESTATUS[0]}}" >&2',
                            fpscope.path, str(TRACE)], capture_output=True, text=True, timeout=300)
        assert len(p.stdout.splitlines()) == 3, p.stdout
        status = p.stderr.strip().splitlines()
        assert status[-1] in ("status 0", "status 141"), p.stderr
        assert len(status) == 1, p.stderr  # nothing but the status line: no "crashed"
