"""Issue 19 item 7 (CLI; the Python half is in test_out_python.py): thread counts beyond
fpscope::max_threads were passed to libgomp, which segfaulted (convert --threads 100000) or
died with a fatal error leaving a temporary file (40000). Every --threads is now checked by the
option layer (parse_threads): a usage error, exit status 2, and nothing written."""
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error

ROOT = Path(__file__).resolve().parents[2]
TRACE = ROOT / "datasets" / "traces" / "digits-mlp.h5"


@pytest.mark.parametrize("count", ["100000", "40000", "1025", "-1", "2147483648", "1e3"])
@pytest.mark.parametrize("command", ["convert", "hist", "replay"])
def test_an_absurd_thread_count_is_a_usage_error(fpscope, tmp_path, command, count):
    x = tmp_path / "x.npy"
    np.save(x, np.ones(1000, np.float32))
    args = {"convert": ["convert", x, "--to", "e4m3", "-o", tmp_path / "y.npy"], "hist": ["hist", x],
            "replay": ["replay", TRACE]}[command]
    p = fpscope.run(*args, "--threads", count)
    assert_one_line_error(p, "--threads", status=2)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["x.npy"]


@pytest.mark.parametrize("command", ["convert", "hist", "replay"])
def test_the_largest_allowed_count_runs(fpscope, tmp_path, command):
    """The negative control: 1024 threads (fpscope::max_threads) on 2 cores work."""
    x = tmp_path / "x.npy"
    np.save(x, np.linspace(-1, 1, 100000, dtype=np.float32))
    args = {"convert": ["convert", x, "--to", "e4m3", "-o", tmp_path / "y.npy"], "hist": ["hist", x],
            "replay": ["replay", TRACE, "--steps", "0:4"]}[command]
    p = fpscope.run(*args, "--threads", "1024")
    assert p.returncode == 0, p.stderr
