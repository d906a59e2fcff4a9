"""fpscope as `pip install <checkout>` leaves it: the package in site-packages, the `fpscope`
command, the README's Python session, and a recording of a PyTorch loop with fpscope.record
that the library replays. Run by ctest with one wheel installed in two venvs (tools/wheel.sh):
PyPI's current torch and NumPy 2 (install.pypi.*), Debian's torch 1.13 and NumPy 1.24
(install.debian.*), each from an empty directory with no PYTHONPATH."""
import doctest
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import torch

import fpscope
import fpscope.record

ROOT = Path(os.environ.get("FPSCOPE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
COMMAND = Path(sysconfig.get_path("scripts")) / "fpscope"  # the console entry point pip made
VERSION = re.search(r"project\(fpscope VERSION ([0-9.]+)", (ROOT / "CMakeLists.txt").read_text()).group(1)


def run(*args, check=True):
    return subprocess.run([str(COMMAND), *map(str, args)], capture_output=True, text=True, check=check)


def test_the_installed_package_is_the_one_imported(monkeypatch):
    pkg = Path(fpscope.__file__).resolve().parent
    assert pkg.parent == Path(sysconfig.get_path("platlib")).resolve()
    assert Path(fpscope.record.__file__).resolve().parent == pkg
    assert (pkg / "bin" / "fpscope").is_file()
    monkeypatch.delenv("FPSCOPE_BIN", raising=False)
    assert fpscope._find_cli() == str(pkg / "bin" / "fpscope")  # fpscope.cli() runs it
    assert importlib.metadata.version("fpscope") == VERSION


def test_command_runs_the_cli():
    assert run("--version").stdout.strip() == f"fpscope {VERSION}"
    # Usage errors come through as the CLI's own: one line on stderr, exit code 2.
    p = run("nonsense", check=False)
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr.startswith("fpscope: error: unknown command 'nonsense'")
    p = subprocess.run([sys.executable, "-m", "fpscope", "--version"], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == f"fpscope {VERSION}"


def test_formats_command_agrees_with_the_module():
    rows = json.loads(run("formats", "--json").stdout)
    assert [r["name"] for r in rows] == fpscope.formats()
    for r in rows:
        assert r == fpscope.format_info(r["name"])
    lines = run("formats").stdout.splitlines()
    assert lines[0].split()[:5] == ["format", "bits", "e", "m", "bias"]
    assert [line.split()[0] for line in lines[1:]] == fpscope.formats()
    assert lines[1 + fpscope.formats().index("e4m3")].split()[1:5] == ["8", "4", "3", "7"]


def test_readme_python_session(monkeypatch):
    """The README's Python session, run as a doctest in the checkout (it loads datasets/)."""
    blocks = re.findall(r"```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (session,) = [b for b in blocks if ">>> import numpy as np, fpscope" in b]
    examples = doctest.DocTestParser().get_examples(session)
    assert len(examples) >= 8 and sum(bool(e.want) for e in examples) >= 4
    monkeypatch.chdir(ROOT)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(doctest.DocTest(examples, {}, "README.md", str(ROOT / "README.md"), 0, None), out=report.append)
    assert runner.failures == 0, "".join(report)


def test_record_a_training_loop_and_replay_it(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    path, grads = tmp_path / "run.h5", {}
    # Warnings are errors: the recorder warns when it cannot make its appends crash-safe (it
    # did when `import fpscope` loaded a second libhdf5 next to PyPI h5py's own).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fpscope.record.Recorder(path, "install test: MLP 8-16-3, SGD lr 0.1, seed 0", mode="both") as rec:
            for step in range(6):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                assert rec.record(step, model.named_parameters(), loss=loss.item(), lr=0.1)
                grads[step] = model[0].weight.grad.detach().numpy().copy()
                opt.step()
    assert fpscope.record._hdf5_library() is not None

    t = fpscope.Trace(str(path))
    assert len(t) == 6 and t.producer.startswith(f"fpscope_record 2 (torch {torch.__version__}, ")
    for step in range(6):
        np.testing.assert_array_equal(t.values(step, "0.weight"), grads[step])

    r = fpscope.replay(path, "torch", format="fp16")
    cli = json.loads(run("replay", path, "-P", "torch", "-f", "fp16", "--json").stdout)
    assert r["summary"]["steps"] == cli["summary"]["steps"] == 6
    assert r["summary"] == cli["summary"]
    assert r["summary"]["total"] == 6 * sum(p.numel() for p in model.parameters())
