"""Builds, executes and renders the teaching notebooks.

The sources of truth are the percent-format scripts notebooks/NN_*.py (`# %%` starts a code
cell, `# %% [markdown]` a markdown cell whose lines are `# `-commented): diffable, and runnable
as plain Python. This script turns each into an .ipynb (nbformat), executes it headless
(nbclient) in a kernel running *this* interpreter (the project's venv) with the built module on
PYTHONPATH, and writes the executed .ipynb and an HTML rendering (nbconvert) to OUTDIR.

    .venv/bin/python tools/notebooks.py [--build build] [--out build/notebooks] [NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "fpscope-venv"


def sources() -> list[Path]:
    """The notebook sources, in order."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def to_notebook(path: Path) -> nbformat.NotebookNode:
    """A percent-format script as a notebook."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", ln) for ln in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in path.read_text().splitlines():
        m = re.match(r"^# %%(.*)$", line)
        if m:
            flush()
            kind, lines = ("markdown" if "[markdown]" in m.group(1) else "code"), []
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python (fpscope venv)", "language": "python"}
    return nb


def _kernel_dir() -> str:
    """A kernelspec that runs this interpreter: Debian's 'python3' one runs /usr/bin/python3,
    which does not see the venv's packages (ml_dtypes)."""
    d = Path(tempfile.mkdtemp(prefix="fpscope-kernels-"))
    spec = d / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (fpscope venv)", "language": "python"}))
    return str(d)


def environment(build: Path) -> None:
    """The kernel inherits this process's environment: the built package, the CLI, no GUI."""
    pkg = str(build / "lib" / "python")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (pkg, os.environ.get("PYTHONPATH")) if p)
    os.environ.setdefault("FPSCOPE_BIN", str(build / "tools" / "fpscope" / "fpscope"))
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    if KERNEL not in os.environ.get("JUPYTER_PATH", ""):
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (_kernel_dir(), os.environ.get("JUPYTER_PATH")) if p)


def execute(nb: nbformat.NotebookNode, timeout: int = 120) -> nbformat.NotebookNode:
    """Runs every cell in the repository root (notebooks refer to datasets/ from there)."""
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def render_html(nb: nbformat.NotebookNode) -> str:
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=Path, default=ROOT / "build", help="the CMake build directory [build]")
    ap.add_argument("--out", type=Path, help="output directory [BUILD/notebooks]")
    ap.add_argument("names", nargs="*", help="only these notebooks (file stems, e.g. 01_formats)")
    a = ap.parse_args(argv)
    out = a.out or a.build / "notebooks"
    out.mkdir(parents=True, exist_ok=True)
    environment(a.build.resolve())
    for src in sources():
        if a.names and src.stem not in a.names:
            continue
        t = time.perf_counter()
        nb = execute(to_notebook(src))
        nbformat.write(nb, out / f"{src.stem}.ipynb")
        (out / f"{src.stem}.html").write_text(render_html(nb))
        print(f"{src.stem}: {time.perf_counter() - t:.1f} s -> {out / (src.stem + '.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
