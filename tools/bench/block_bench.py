"""Block quantization of a GEMM operand (issue 16) against the per-tensor counting pass on the
same values, one core.

The per-block pass is fpscope.quantize (lib/src/block_quant.cpp: per-block amax, scale, every
element's cast, dequantized value, class and error statistics); the counting pass is
fpscope.class_counts at one scale (the exact class counts the gradient replay takes per tensor:
counting.hpp's class_tally). Both run on one core (threads=1; the block pass is serial). Times
are medians of interleaved rounds.

The statistics path (lib/src/block_stats.cpp, docs/recipes.md "Block statistics"): fpscope.block_stats
with one geometry at a time (the pass a power-of-two recipe needs: 1x32 rows or columns for MX,
1x128 or 128x128 for fp8-block and deepseek) and with all five (what the recorder stores), and
the answer of a recipe from the five (fpscope.answer_block_stats: no values read).

    OMP_NUM_THREADS=1 PYTHONPATH=build/lib/python .venv/bin/python tools/bench/block_bench.py [--rows R --cols C --rounds N]
"""
import argparse
import statistics
import time

import numpy as np

import fpscope

RECIPES = ["mxfp8", "mxfp8:scaling_mode=floor", "mxfp4", "nvfp4", "nvfp4:profile=torchao", "fp8-block", "deepseek",
           "te-current"]
GEOMETRIES = [(1, 32), (32, 1), (1, 128), (128, 1), (128, 128)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((a.rows, a.cols)) * np.exp2(rng.integers(-8, 8, (a.rows, 1)))).astype(np.float32)
    items = {"count e4m3 (per tensor)": lambda: fpscope.class_counts(x, "e4m3", [1.0], profile="cuda", threads=1)}
    for r in RECIPES:
        items[f"quantize {r}"] = (lambda r=r: fpscope.quantize(x, r, "input"))
    for g in GEOMETRIES:
        items[f"block_stats {g[0]}x{g[1]}"] = (lambda g=g: fpscope.block_stats(x, [g], threads=1))
    items["block_stats (all five)"] = lambda: fpscope.block_stats(x, threads=1)
    st = fpscope.block_stats(x, threads=1)
    for r, axis in (("mxfp8", "row"), ("mxfp8", "column"), ("fp8-block", "row")):
        items[f"answer {r} {axis} from stats"] = (lambda r=r, axis=axis: fpscope.answer_block_stats(st, r, "input", axis))
    times = {k: [] for k in items}
    order = list(items)
    for _ in range(a.rounds):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            items[k]()
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["count e4m3 (per tensor)"])
    n = x.size
    print(f"{a.rows} x {a.cols} float32 ({n / 1e6:.1f} M values), one core, median of {a.rounds} rounds\n")
    print(f"| {'pass':<36} | {'ms':>8} | {'ns/value':>8} | {'x counting':>10} |")
    print(f"| {'-' * 36} | {'-' * 8} | {'-' * 8} | {'-' * 10} |")
    for k in items:
        m = statistics.median(times[k])
        print(f"| {k:<36} | {m * 1e3:8.1f} | {m / n * 1e9:8.2f} | {m / base:10.2f} |")
    cells = sum(len(g[k][0]) for g in st["geometries"] for k in ("elements", "blocks", "minima"))
    print(f"\nblock statistics of the five geometries: {cells} cells ({cells * 12 / 1e6:.2f} MB as uint32 keys "
          f"+ uint64 counts, before compression) for {x.nbytes / 1e6:.1f} MB of values")


if __name__ == "__main__":
    main()
