"""Fixtures of the hostile-input suite: the fpscope binary ($FPSCOPE_BIN), the build tree
($FPSCOPE_BUILD) and how to run either with resource limits. Tests here never touch anything
outside their tmp_path: device nodes, FIFOs and symlinks they need are made there (mknod as root)."""
import importlib.util
import os
import resource
import subprocess
from pathlib import Path

import pytest

# The CLI tests' helpers, loaded under a name of their own: `import conftest` here would be this
# very file (pytest has already put it in sys.modules as "conftest").
_spec = importlib.util.spec_from_file_location("cli_conftest", Path(__file__).resolve().parent.parent / "cli" / "conftest.py")
cli_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli_conftest)
Fpscope, assert_one_line_error = cli_conftest.Fpscope, cli_conftest.assert_one_line_error


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


def write_trace(path, steps, model="hostile", producer="tests/hostile"):
    """A docs/trace.md v1 trace written with h5py, with everything a hostile file may choose:
    steps is a list of dicts {"group": link name, "attrs": step attributes (step, complete...:
    a key set to None is left out), "tensors": {name: float32 array}}. Names and the model may be
    bytes (not valid UTF-8). Tensors get raw values and exact counts."""
    import h5py
    import numpy as np
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["fpscope_trace_version"] = np.int32(1)
        f.attrs["producer"] = np.bytes_(producer) if isinstance(producer, bytes) else producer
        f.attrs["model"] = np.bytes_(model) if isinstance(model, bytes) else model
        f.attrs["created"] = "2026-12-06T00:00:00Z"
        root = f.create_group("steps", track_order=True)
        for i, s in enumerate(steps):
            g = root.create_group(s.get("group", f"{i:08d}"), track_order=True)
            attrs = {"step": np.int64(i), "loss": 1.0, "lr": 0.1, "loss_scale": 1.0, "complete": np.int8(1)}
            attrs.update(s.get("attrs", {}))
            tg = g.create_group("tensors", track_order=True)
            tensors = s.get("tensors", {"w": np.linspace(-1, 1, 100, dtype=np.float32)})
            for name, x in tensors.items():
                x = np.asarray(x, np.float32)
                t = tg.create_group(name)
                cli_conftest.float32_tensor_attrs(t, x)
                t.create_dataset("values", data=x.reshape(-1))
            for k, v in attrs.items():  # `complete` last, as writers do
                if v is not None and k != "complete":
                    g.attrs[k] = v
            if attrs["complete"] is not None:
                g.attrs["complete"] = attrs["complete"]
    return path


def make_device(path, major, minor):
    """A character device node at `path` (in a test's tmp_path: never the real /dev), e.g.
    (1, 3) a null device, (1, 7) a full one. Skips the test where mknod is not allowed (not
    root, or a container without CAP_MKNOD)."""
    import stat
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("mknod is not permitted here (needs root with CAP_MKNOD)")
    return path
