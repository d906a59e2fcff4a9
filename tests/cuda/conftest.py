"""Fixtures of the CUDA target's tests without a GPU: the fpscope-gpucheck binary
($GPUCHECK_BIN) and the source tree ($FPSCOPE_SOURCE), both set by ctest (tests/cuda/CMakeLists.txt)."""
import json
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gpucheck():
    path = os.environ.get("GPUCHECK_BIN")
    if not path or not os.access(path, os.X_OK):
        pytest.exit("GPUCHECK_BIN is not set to the built fpscope-gpucheck: run these tests through ctest", returncode=4)
    return path


@pytest.fixture(scope="session")
def source():
    path = os.environ.get("FPSCOPE_SOURCE")
    if not path or not (Path(path) / "tools" / "gpucheck" / "device-run.sh").is_file():
        pytest.exit("FPSCOPE_SOURCE is not set to the source tree: run these tests through ctest", returncode=4)
    return Path(path)


@pytest.fixture(scope="session")
def has_device(gpucheck):
    """Whether CUDA sees a device here (the tests that need none skip where one is)."""
    r = subprocess.run([gpucheck, "--device-only", "--only", "unscale", "--budget", "1e-9", "--json"],
                       capture_output=True, text=True, timeout=120)
    return json.loads(r.stdout)["device_state"] == "ok"
