"""Shared fixtures of the fpscope CLI tests: the binary (from $FPSCOPE_BIN) and how to run it."""
import json
import os
import shutil
import subprocess
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


def nonempty(items):
    """items as a list, asserted non-empty: assertions in a loop over nothing prove nothing."""
    items = list(items)
    assert items, "nothing to check: the list is empty"
    return items


def assert_nothing_left(directory: Path, *keep):
    """Only `keep` remains in `directory`: no output file, no temporary file."""
    left = sorted(x.name for x in Path(directory).iterdir())
    assert left == sorted(keep), f"left behind: {left}"


@pytest.fixture
def tmp(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)
