#!/usr/bin/env python3
"""What recording costs a training loop, and how fast the recorder's histograms are.

1. Overhead: trains the character-level transformer LM of datasets/record_lm_grads.py (same
   model, corpus, optimizer; CPU unless --device) for --steps steps per contender, in
   interleaved rounds (every round runs every contender once, in shuffled order, on the same
   model and data stream):
     none        no recording;
     hist        record(step, model.named_parameters(), mode="hist") every step, the default
                 recorder (background writer; histograms through the fpscope module);
     hist-sync   the same with background=False (record() writes before it returns);
     hist-numpy  the same, synchronous, NumPy histograms (what the recorder did before);
   each recording contender includes its close() (the last writes). Reports the median time per
   step and the overhead: per round, contender / none - 1, the median over rounds (the goal for
   "hist": <= 10%); and, less sensitive to other load, the CPU time per step of the training
   thread (what record() costs the loop itself) and of the whole process (the writer's work too).
2. Throughput: histogram + statistics (fpscope.tensor_summary: the C++ library) of --values
   float32 values (normal values, 2^-30..2^0 wide) on 1 thread and on every core, beside the
   histogram alone (fpscope.bucket_histogram) and the NumPy path; values/s per core, goal >= 1e9.

Usage: PYTHONPATH=build/lib/python .venv/bin/python tools/bench/record_bench.py
           [--steps 20] [--rounds 5] [--torch-threads 1] [--device cpu] [--values 20000000]
"""
import argparse
import os
import pathlib
import platform
import random
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tools" / "record"), str(ROOT / "datasets"), str(ROOT / "tools" / "bench")]
import fpscope_record as fr  # noqa: E402
from record_lm_grads import CharLM, corpus  # noqa: E402
from replay_bench import interleaved  # noqa: E402


def trainer(device, corpus_dir):
    """A step function of the dataset's LM run (seed 0): loss.backward() done, grads ready."""
    torch.manual_seed(0)
    text, _ = corpus(corpus_dir)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    context, batch = 64, 32
    model = CharLM(len(chars), d_model=64, layers=2, heads=4, context=context).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, len(data) - context - 1, (batch,), generator=gen)
        x = torch.stack([data[i : i + context] for i in idx]).to(device)
        y = torch.stack([data[i + 1 : i + context + 1] for i in idx]).to(device)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    return model, opt, step


def overhead(args):
    model, opt, step = trainer(args.device, args.corpus)
    params = sum(p.numel() for p in model.parameters())
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="record_bench."))
    sync = (lambda: torch.cuda.synchronize()) if args.device.startswith("cuda") else (lambda: None)

    def run(kw):
        def go(r):
            rec = None if kw is None else fr.Recorder(tmp / f"r{r}.h5", "record_bench", mode="hist",
                                                      max_steps=args.steps, **kw)
            sync()
            t, c, p = time.perf_counter(), time.thread_time(), time.process_time()
            for s in range(args.steps):
                loss = step()
                if rec is not None:
                    rec.record(s, model.named_parameters(), loss=loss)
                opt.step()
            if rec is not None:
                rec.close()
            sync()
            n = args.steps
            return (time.perf_counter() - t) / n, (time.thread_time() - c) / n, (time.process_time() - p) / n

        return go

    contenders = {"none": run(None), "hist": run({}), "hist-sync": run({"background": False}),
                  "hist-numpy": run({"background": False, "backend": "numpy"})}
    for s in range(3):  # warm up (allocator, threads)
        step()
        opt.step()
    times, cpu = {k: [] for k in contenders}, {k: [] for k in contenders}
    rng = random.Random(0)
    for r in range(args.rounds):
        order = list(contenders)
        rng.shuffle(order)
        for k in order:
            wall, main, proc = contenders[k](r)
            times[k].append(wall)
            cpu[k].append((main, proc))
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    # Paired: each round's contender against the same round's "none" (taken minutes apart at
    # most, under the same load), then the median over rounds.
    paired = {k: statistics.median(t / b for t, b in zip(v, times["none"])) - 1 for k, v in times.items()}
    print(f"## Overhead: char LM ({params} parameters, {len(list(model.parameters()))} tensors), "
          f"{args.steps} steps x {args.rounds} rounds, device {args.device}, torch threads {torch.get_num_threads()}\n")
    print("| contender | median step | best step | overhead (median over rounds of time / none's - 1) "
          "| training thread's CPU per step | process CPU per step |")
    print("|---|---|---|---|---|---|")
    for k, v in times.items():
        main, proc = (statistics.median(c[i] for c in cpu[k]) for i in (0, 1))
        print(f"| {k} | {statistics.median(v) * 1e3:.1f} ms | {min(v) * 1e3:.1f} ms | {paired[k]:+.1%} "
              f"| {main * 1e3:.1f} ms | {proc * 1e3:.1f} ms |")
    hist = paired["hist"]
    print(f"\ngoal: overhead of 'hist' <= 10%: {'PASS' if hist <= 0.10 else 'MISS'} ({hist:+.1%})\n")


def throughput(args):
    x = (np.random.default_rng(0).standard_normal(args.values) * np.exp2(-np.random.default_rng(1).integers(0, 31, args.values))).astype(np.float32)
    cores = os.cpu_count() or 1
    summary = fr._module_summary()
    if summary is None:
        print("## Throughput: the fpscope module is not importable (PYTHONPATH=build/lib/python)\n")
        return
    from fpscope import bucket_histogram

    cases = {
        ("tensor_summary (histogram + statistics)", 1): lambda: summary(x, 1),
        ("tensor_summary (histogram + statistics)", cores): lambda: summary(x, cores),
        ("bucket_histogram alone", 1): lambda: bucket_histogram(x, threads=1),
        ("bucket_histogram alone", cores): lambda: bucket_histogram(x, threads=cores),
    }
    if args.numpy:
        cases[("NumPy histogram() + tensor_stats()", 1)] = lambda: (fr.histogram(x), fr.tensor_stats(x))
    times = interleaved(cases, args.rounds)
    print(f"## Throughput: {args.values:.2e} float32 values, {args.rounds} rounds, {cores} cores\n")
    print("| path | threads | median | values/s | values/s per core |")
    print("|---|---|---|---|---|")
    for (name, th), v in times.items():
        m = statistics.median(v)
        print(f"| {name} | {th} | {m * 1e3:.1f} ms | {args.values / m:.3g} | {args.values / m / th:.3g} |")
    one = args.values / statistics.median(times[("tensor_summary (histogram + statistics)", 1)])
    print(f"\ngoal: histogram + statistics >= 1e9 values/s per core (1 thread): {'PASS' if one >= 1e9 else 'MISS'} "
          f"({one:.3g})\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=1, help="torch.set_num_threads (the dataset's run: 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corpus", default="/usr/share/common-licenses")
    ap.add_argument("--values", type=int, default=20_000_000)
    ap.add_argument("--numpy", action="store_true", help="also time the NumPy histogram path (slow)")
    ap.add_argument("--only", choices=("overhead", "throughput"))
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    load = os.getloadavg()
    print(f"# record_bench.py: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    if args.only != "throughput":
        overhead(args)
    if args.only != "overhead":
        throughput(args)


if __name__ == "__main__":
    main()
