"""`mpirun -np N fpscope replay --mpi rank*.h5` (docs/replay.md, "Several ranks"): the output is the
one-process replay's, byte for byte, on the shipped 4-rank runs, with 1 to 4 MPI processes
(oversubscribed on a small machine). Run by ctest (cli.mpi) where CMake found MPI, with
FPSCOPE_MPIEXEC the launcher."""
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[2]
RANKS = ROOT / "datasets" / "traces" / "ranks"
MPIEXEC = os.environ.get("FPSCOPE_MPIEXEC")
pytestmark = pytest.mark.skipif(not MPIEXEC, reason="FPSCOPE_MPIEXEC is not set (fpscope built without MPI)")


def mpirun(n, *args):
    env = {**os.environ, "OMPI_MCA_mca_base_component_show_load_errors": "0"}
    return subprocess.run([MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", str(n), os.environ["FPSCOPE_BIN"],
                           *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("kind", ["ddp", "zero", "tp"])
def test_mpi_replay_prints_the_one_process_replay(fpscope, kind, n):
    files = sorted((RANKS / kind).glob("rank*.h5"))
    assert len(files) == 4
    for args in (["-P", "torch"], ["-P", "te-delayed", "--json"], ["-P", "mx", "--csv"],
                 ["-P", "te-current", "--amax-group", "rank", "--json"]):
        one = fpscope.ok("replay", "-q", *args, *files)
        p = mpirun(n, "replay", "--mpi", "-q", *args, *files)
        assert p.returncode == 0, p.stderr
        assert len(one) > 500 and p.stdout == one, args


def test_mpi_replay_of_one_process_and_four(fpscope):
    files = sorted((RANKS / "zero").glob("rank*.h5"))
    one = fpscope.ok("replay", "-q", "--json", *files)
    for n in (1, 4):
        assert mpirun(n, "replay", "--mpi", "-q", "--json", *files).stdout == one, n


def test_mpi_replay_errors_end_every_process(fpscope, tmp_path):
    files = []
    for f in sorted((RANKS / "tp").glob("rank*.h5")):
        shutil.copy(f, tmp_path / f.name)
        files.append(tmp_path / f.name)
    with h5py.File(files[1], "r+") as h:
        h["steps/00000004/tensors/fc.weight"].attrs["split_index"] = 0
    p = mpirun(2, "replay", "--mpi", "-q", *files)
    assert p.returncode != 0 and p.stdout == "" and "a duplicated shard" in p.stderr, p.stderr
    p = mpirun(2, "replay", "--mpi", "-q", files[0])
    assert p.returncode != 0 and "--mpi: needs several rank traces" in p.stderr


@pytest.mark.parametrize("kind", ["ddp", "zero", "tp"])
def test_the_shipped_run_replays_alike_three_ways(fpscope, tmp_path, kind):
    """Issue 18's "done when": the 4-rank recording replays identically through `replay
    rank*.h5`, `trace merge` + `replay`, and `mpirun -np 2 ... --mpi` (the parts of the result
    that say what the run did; where it was read from differs)."""
    import json

    files = sorted((RANKS / kind).glob("rank*.h5"))
    assert len(files) == 4
    merged = tmp_path / "run.h5"
    fpscope.ok("trace", "merge", "-q", *files, "-o", merged)
    drop = ("world_size", "amax_group", "overflow_sources", "steps_left_out")
    for policy in ("torch", "te-delayed", "te-current"):
        ways = [json.loads(fpscope.ok("replay", "-q", "--json", "-P", policy, *files)),
                json.loads(fpscope.ok("replay", "-q", "--json", "-P", policy, merged))]
        p = mpirun(2, "replay", "--mpi", "-q", "--json", "-P", policy, *files)
        assert p.returncode == 0, p.stderr
        ways.append(json.loads(p.stdout))
        runs = [(w["steps"], {k: v for k, v in w["summary"].items() if k not in drop}) for w in ways]
        assert len(runs[0][0]) == 8 and runs[0] == runs[1] == runs[2], policy
        assert any(s["skipped"] for s in runs[0][0]) or policy != "torch"  # the spike at step 5
