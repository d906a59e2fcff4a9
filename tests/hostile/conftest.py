"""Fixtures of the hostile-input suite: the fpscope binary ($FPSCOPE_BIN), the build tree
($FPSCOPE_BUILD) and how to run either with resource limits. Tests here never touch anything
outside their tmp_path: device nodes, FIFOs and symlinks they need are made there (mknod as root)."""
import importlib.util
import os
import resource
import subprocess
from pathlib import Path

import pytest

# tests/cli/conftest.py, loaded under its own name: this file is the module "conftest" here, so a
# plain "from conftest import ..." would import this file itself, half-initialised.
_spec = importlib.util.spec_from_file_location("fpscope_cli_conftest",
                                               Path(__file__).resolve().parent.parent / "cli" / "conftest.py")
_cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cli)
Fpscope, assert_one_line_error = _cli.Fpscope, _cli.assert_one_line_error  # shared with the CLI tests


@pytest.fixture(scope="session")
def fpscope():
    path = os.environ.get("FPSCOPE_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.exit("FPSCOPE_BIN is not set to the built fpscope: run these tests through ctest", returncode=4)
    return Fpscope(path)


@pytest.fixture(scope="session")
def build_dir():
    path = os.environ.get("FPSCOPE_BUILD")
    if not path or not Path(path).is_dir():
        pytest.exit("FPSCOPE_BUILD is not set to the build tree: run these tests through ctest", returncode=4)
    return Path(path)


def limited(address_space=None, file_size=None):
    """A preexec_fn setting RLIMIT_AS / RLIMIT_FSIZE in the child only."""
    def apply():
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    return apply


def run(args, timeout=120, **kw):
    """Runs a command (list) capturing text output; a hang is a test failure, not a CI timeout."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
