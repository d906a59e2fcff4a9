"""The `fpscope` command of an installed package: `pip install .` makes it the console entry point
(pyproject.toml, [project.scripts]), and `python -m fpscope` runs it too. It replaces this
process with the C++ CLI that the wheel carries in fpscope/bin, so that the command behaves as
the binary itself: the same arguments, streams, exit codes and signals."""

import os
import sys
from pathlib import Path


def main() -> None:
    exe = Path(__file__).resolve().parent / "bin" / "fpscope"
    if not os.access(exe, os.X_OK):
        sys.exit(f"fpscope: error: this fpscope package has no CLI at {exe}; install the package with "
                 "`pip install .` from a checkout, or run the CLI from a build tree")
    os.execv(exe, [sys.argv[0], *sys.argv[1:]])
