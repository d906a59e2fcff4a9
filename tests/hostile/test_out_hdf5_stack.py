"""Issue 19 item 11: HDF5's own diagnostic stack ("HDF5-DIAG: Error detected ...", 8 lines) never
reaches stderr: libhdf5 keeps its print switch per thread, and the reading threads of a replay
(OpenMP, default thread count) printed it on a corrupt chunk index while `-j 1` did not. Every
file of the fuzz corpus, through replay and hist under the default and an explicit thread count:
at most one line on stderr, the fpscope error."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "trace" / "corpus").glob("*.h5"))


@pytest.mark.parametrize("threads", [[], ["--threads", "4"]], ids=["default", "4"])
@pytest.mark.parametrize("command", ["replay", "hist"])
def test_no_hdf5_stack_on_any_corpus_file(fpscope, command, threads):
    assert len(CORPUS) > 30
    errors = 0
    for f in CORPUS:
        p = fpscope.run(command, f, *threads, env={"FPSCOPE_STALL_SECONDS": "2"})
        assert "HDF5-DIAG" not in p.stderr and "#000:" not in p.stderr and "major:" not in p.stderr, (f.name, p.stderr)
        assert len(p.stderr.splitlines()) <= 1, (f.name, p.stderr)
        assert (p.returncode == 0) == (p.stderr == ""), (f.name, p.returncode, p.stderr)
        errors += p.returncode != 0
    assert errors > 10  # the corpus is mostly bad files: the errors were there to print
