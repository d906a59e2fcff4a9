#!/usr/bin/env python3
"""Replay of the same steps from recorded histograms and from raw values, side by side.

datasets/traces/lm-char.h5 records every step's bucket histograms and, on some steps, the raw
values too. This copies those steps twice (h5py): once with the values only, once with the
histograms only; then times `fpscope replay COPY -P POLICY --json -q` on both in interleaved,
shuffled rounds, plus a copy that holds nothing but the steps' metadata (one empty tensor per
step) for the fixed cost of a replay (process, worker, file open). Prints the medians, the time
per step above that fixed cost, and the values and buckets each copy holds: a histogram-only
step must cost in proportion to its buckets, not to the values they stand for.

Then the same with synthetic tensors of growing size (fpscope.TraceWriter: values and
histograms of the same gradients): from values the time grows with the values, from histograms
it must not.

Usage: PYTHONPATH=build/lib/python .venv/bin/python tools/bench/replay_hist_bench.py
       [--fpscope build/tools/fpscope/fpscope] [--trace datasets/traces/lm-char.h5]
       [--policy torch] [--rounds 15] [--repeat 20]
--repeat copies each step that many times (as consecutive steps) so that the per-step costs
stand out from the fixed cost.
"""
import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time

import h5py
import numpy as np

from replay_bench import interleaved


def copy_steps(src, dst, keep, repeat):
    """The steps of src that have raw values, `repeat` times over, keeping `keep` of each tensor:
    "values", "hist" or "none" (metadata only, one empty tensor per step). Returns (steps,
    values, buckets) written."""
    steps = values = buckets = 0
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        with_values = [n for n in sorted(f["steps"]) if all("values" in t for t in f["steps"][n]["tensors"].values())]
        for r in range(repeat):
            for n in with_values:
                s = f["steps"][n]
                d = g.create_group(f"steps/{steps:08d}")
                for k, v in s.attrs.items():
                    d.attrs[k] = v
                d.attrs["step"] = np.int64(steps)
                tg = d.create_group("tensors")
                for name, t in s["tensors"].items():
                    if keep == "none":
                        e = tg.create_group("empty")
                        for k, v in t.attrs.items():
                            e.attrs[k] = v
                        e.attrs["shape"] = np.array([0], np.int64)
                        for k in ("count", "zeros", "infs", "nans"):
                            e.attrs[k] = np.uint64(0)
                        e.attrs["amax"] = 0.0
                        e.create_dataset("values", data=np.zeros(0, np.float32))
                        break
                    u = tg.create_group(name)
                    for k, v in t.attrs.items():
                        u.attrs[k] = v
                    if keep == "values":
                        x = t["values"][...]
                        u.create_dataset("values", data=x, chunks=(min(x.size, 1 << 20),) if x.size else None,
                                         shuffle=bool(x.size), compression="gzip" if x.size else None)
                        values += x.size
                    else:
                        u.create_dataset("hist_keys", data=t["hist_keys"][...])
                        u.create_dataset("hist_counts", data=t["hist_counts"][...])
                        buckets += t["hist_keys"].shape[0]
                        values += int(t.attrs["count"])
                d.attrs["complete"] = np.int8(1)
                steps += 1
    return steps, values, buckets


def replay(a, path):
    """One timed contender: fpscope replay of `path`, output discarded."""
    return lambda: subprocess.run([a.fpscope, "replay", path, "-P", a.policy, "--json", "-q", "-j", a.threads],
                                  check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--fpscope", default=os.path.join(here, "../../build/tools/fpscope/fpscope"))
    ap.add_argument("--trace", default=os.path.join(here, "../../datasets/traces/lm-char.h5"))
    ap.add_argument("--policy", default="torch")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        files, sizes = {}, {}
        for keep in ("values", "hist", "none"):
            files[keep] = os.path.join(d, f"{keep}.h5")
            sizes[keep] = copy_steps(a.trace, files[keep], keep, a.repeat)
        # The same counts both ways (the trace's scales are powers of two: exact from buckets).
        outs = {k: subprocess.run([a.fpscope, "replay", files[k], "-P", a.policy, "--json", "-q"], check=True,
                                  capture_output=True, text=True).stdout for k in ("values", "hist")}
        import json
        va, hi = json.loads(outs["values"]), json.loads(outs["hist"])
        same = all(x[c] == y[c] for x, y in zip(va["steps"], hi["steps"])
                   for c in ("zero", "underflow", "subnormal", "normal", "overflow", "nonfinite"))
        times = interleaved({k: replay(a, f) for k, f in files.items()}, a.rounds)

    med = {k: statistics.median(v) for k, v in times.items()}
    steps = sizes["values"][0]
    print(f"# replay from histograms vs from values ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    print(f"trace: {a.trace}: the {steps // a.repeat} steps with raw values, x {a.repeat} = {steps} steps; "
          f"policy {a.policy}; -j {a.threads}; {a.rounds} interleaved rounds")
    print(f"counts identical from values and from histograms: {same}")
    print()
    print(f"| copy | values it stands for | buckets read | median s | best s | per step above the fixed cost |")
    print(f"|---|---|---|---|---|---|")
    for k, label in (("values", "raw values"), ("hist", "histograms only"), ("none", "metadata only (fixed cost)")):
        per = (med[k] - med["none"]) / steps * 1e3
        print(f"| {label} | {sizes[k][1]:,} | {sizes[k][2]:,} | {med[k]:.3f} | {min(times[k]):.3f} | "
              f"{per:.3f} ms |" if k != "none" else
              f"| {label} | 0 | 0 | {med[k]:.3f} | {min(times[k]):.3f} | - |")
    v = med["values"] - med["none"]
    h = med["hist"] - med["none"]
    print()
    print(f"histograms / values, above the fixed cost: {h / v:.3f} "
          f"(buckets / values: {sizes['hist'][2] / sizes['values'][1]:.4f})")
    print(f"values counted per second from raw values: {sizes['values'][1] / v / 1e6:.0f} M/s; "
          f"values stood for per second from histograms: {sizes['hist'][1] / h / 1e6:.0f} M/s")
    synthetic(a)


def synthetic(a):
    """Steps of tensors of growing size, from values and from histograms."""
    import fpscope
    print()
    print("## synthetic: 8 steps x 4 tensors of N values each (log2|x| ~ N(-14, 5)), policy", a.policy)
    print()
    print("| N per tensor | from values, median s | from histograms, median s | buckets per tensor (mean) |")
    print("|---|---|---|---|")
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        for n in (1 << 14, 1 << 18, 1 << 22):
            files, buckets = {}, []
            for raw in (True, False):
                path = os.path.join(d, f"{n}-{raw}.h5")
                with fpscope.TraceWriter(path, model=f"synthetic {n}") as w:
                    for s in range(8):
                        ts = {f"t{k}": (np.exp2(rng.normal(-14, 5, n)) * rng.choice([-1, 1], n)).astype(np.float32)
                              for k in range(4)}
                        if not raw:
                            buckets += [len(fpscope.bucket_histogram(x)[0]) for x in ts.values()]
                        w.step(s, loss=1.0, lr=1e-3, tensors=ts, raw=raw, hist=not raw)
                files[raw] = path
            times = interleaved({raw: replay(a, f) for raw, f in files.items()}, max(3, a.rounds // 3))
            print(f"| 2^{n.bit_length() - 1} | {statistics.median(times[True]):.3f} | "
                  f"{statistics.median(times[False]):.3f} | {statistics.mean(buckets):.0f} |")


if __name__ == "__main__":
    main()
