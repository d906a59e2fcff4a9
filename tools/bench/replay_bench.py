#!/usr/bin/env python3
"""fpscope replay against h5py merely reading the same datasets, side by side.

Writes a large raw trace (docs/trace.md: float32 values, shuffle + gzip 4, chunks of 2^20), then
times, in interleaved rounds (each round runs every contender once, in shuffled order):
  - h5py:   open the file and read every step's every `values` dataset into memory;
  - replay: `fpscope replay TRACE -P torch --json` (reads the same datasets, counts every class
            at the step's scale, steps the scaler), output discarded.
Prints the median and best of each and the ratio h5py time / replay time (the goal: replay on
every CPU at least 2.5x the speed of the plain read, on a 2-core machine; it was 0.7x before
replay decoded chunks itself). Both decompress the same gzip chunks; replay reads them raw (pread
at the chunk index's addresses) and inflates (libdeflate), unshuffles and counts them on its
OpenMP threads: it runs once with -j 1 and once with every CPU, so the speed-up across chunks
shows too.

Usage: .venv/bin/python tools/bench/replay_bench.py [--fpscope build/tools/fpscope/fpscope]
       [--steps 12] [--tensors 6] [--size 2000000] [--rounds 5] [--keep FILE]
"""
import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np


def write_trace(path, steps, tensors, size):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs["fpscope_trace_version"] = np.int32(1)
        f.attrs["producer"] = "replay_bench.py"
        f.attrs["model"] = f"synthetic: {steps} steps x {tensors} tensors x {size} float32"
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for s in range(steps):
            g = f.create_group(f"steps/{s:08d}")
            for k, v in (("step", np.int64(s)), ("loss", 1.0), ("lr", 1e-3), ("loss_scale", 1.0)):
                g.attrs[k] = v
            tg = g.create_group("tensors")
            for t in range(tensors):
                x = (np.exp2(rng.normal(-14, 5, size)) * rng.choice([-1, 1], size)).astype(np.float32)
                d = tg.create_group(f"layer{t}.weight")
                d.attrs["dtype"] = "float32"
                d.attrs["shape"] = np.array([size], np.int64)
                d.attrs["count"] = np.uint64(size)
                d.attrs["amax"] = float(np.abs(x).max())
                for k in ("zeros", "infs", "nans"):
                    d.attrs[k] = np.uint64(0)
                d.create_dataset("values", data=x, chunks=(min(size, 1 << 20),), shuffle=True, compression="gzip",
                                 compression_opts=4)
            g.attrs["complete"] = np.int8(1)


def interleaved(fns, rounds):
    """{name: seconds of each round}: every round runs every contender once, in shuffled order,
    so that a noisy machine slows all of them alike."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        order = list(fns)
        random.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def h5py_read(path):
    total = 0
    with h5py.File(path, "r") as f:
        for s in f["steps"].values():
            for t in s["tensors"].values():
                total += t["values"][...].size
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--fpscope", default=os.path.join(here, "../../build/tools/fpscope/fpscope"))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--tensors", type=int, default=6)
    ap.add_argument("--size", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--keep", help="write the trace here (and keep it) instead of a temporary file")
    a = ap.parse_args()
    path = a.keep or os.path.join(tempfile.mkdtemp(), "bench.h5")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        write_trace(path, a.steps, a.tensors, a.size)
        print(f"wrote {path}: {os.path.getsize(path) / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f} s")
    values = a.steps * a.tensors * a.size
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version})")
    print(f"trace: {a.steps} steps x {a.tensors} tensors x {a.size} float32 = {values / 1e6:.0f} M values")

    threads = os.cpu_count() or 1

    def replay(j):
        return lambda: subprocess.run([a.fpscope, "replay", path, "-P", "torch", "--json", "-q", "-j", str(j)],
                                      check=True, stdout=subprocess.DEVNULL)

    def read():
        assert h5py_read(path) == values

    # Other processes take CPU from both contenders, unequally: the load is printed to judge the numbers by.
    print("load average (1, 5, 15 min) before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    fns = {"h5py read": read, "replay -j 1": replay(1), f"replay -j {threads}": replay(threads)}
    times = interleaved(fns, a.rounds)
    print("load average (1, 5, 15 min) after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"\n{'contender':<16}{'median s':>10}{'best s':>10}{'M values/s':>12}")
    for name, ts in times.items():
        print(f"{name:<16}{statistics.median(ts):>10.3f}{min(ts):>10.3f}{values / statistics.median(ts) / 1e6:>12.1f}")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    goal = 2.5  # replay on every CPU (2 cores) against h5py's bare read
    for name in fns:
        if name != "h5py read":
            ratio = med["h5py read"] / med[name]
            verdict = f", goal >= {goal}: {'PASS' if ratio >= goal else 'MISS'}" if name == f"replay -j {threads}" else ""
            print(f"\n{name}: speed / h5py read speed {ratio:.2f} (median){verdict}", end="")
    print(f"\nreplay -j {threads} / replay -j 1: {med['replay -j 1'] / med[f'replay -j {threads}']:.2f}x")
    if not a.keep:
        os.remove(path)


if __name__ == "__main__":
    sys.exit(main())
