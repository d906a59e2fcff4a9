"""Indicative timing of replaying several rank traces (docs/replay.md, "Several ranks"): one
process (`fpscope replay rank*.h5`) against `mpirun -np N fpscope replay --mpi rank*.h5`.

    .venv/bin/python tools/bench/bench_ranks.py --fpscope build/tools/fpscope/fpscope \\
        --mpiexec mpiexec [--ranks 4] [--values 4194304] [--steps 4] [--threads 1]

Writes `ranks` traces of `steps` steps, each rank one flat shard of `values` float32 values
(normal random, raw values only), in a temporary folder, then times each command 3 times (best
of 3, wall clock) and checks the outputs are identical.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "record"))
from fpscope_record import Recorder, flat_shard  # noqa: E402


def best(cmd, env):
    times, out = [], None
    for _ in range(3):
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        times.append(time.perf_counter() - t)
        assert out is None or p.stdout == out
        out = p.stdout
    return min(times), out


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--fpscope", required=True)
    a.add_argument("--mpiexec", required=True)
    a.add_argument("--ranks", type=int, default=4)
    a.add_argument("--values", type=int, default=1 << 22)
    a.add_argument("--steps", type=int, default=4)
    a.add_argument("--threads", type=int, default=1)
    args = a.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        files = []
        for r in range(args.ranks):
            f = Path(d) / f"rank{r}.h5"
            with Recorder(f, "bench_ranks", rank=r, world_size=args.ranks, mode="raw", max_steps=64) as rec:
                for s in range(args.steps):
                    g = (rng.standard_normal(args.values) * 1e-3).astype(np.float32)
                    rec.record(s, {"w": g}, shards={"w": flat_shard("w", (args.ranks * args.values,), r * args.values)})
            files.append(str(f))
        env = {**os.environ, "OMPI_MCA_mca_base_component_show_load_errors": "0"}
        total = args.ranks * args.values * args.steps
        base, out = best([args.fpscope, "replay", "-q", "-j", str(args.threads), *files], env)
        print(f"{total} values ({args.ranks} ranks x {args.values} x {args.steps} steps), -j {args.threads}")
        print(f"  one process:           {base:6.2f} s")
        for n in (1, 2, 4):
            t, o = best([args.mpiexec, "--allow-run-as-root", "--oversubscribe", "-np", str(n), args.fpscope, "replay",
                         "--mpi", "-q", "-j", str(args.threads), *files], env)
            assert o == out, n
            print(f"  mpirun -np {n} --mpi:    {t:6.2f} s")


if __name__ == "__main__":
    main()
