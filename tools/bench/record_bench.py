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
   histogram alone (fpscope.bucket_histogram) and the NumPy path, in interleaved rounds timed
   by CPU time (the thread's, the process's for several threads) and wall time; values/s per
   core from the best CPU time, goal >= 1e9. Then the fixed cost per call on small tensors and
   on the 28 gradients of the model of part 1 (the recorder calls it once a tensor).

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
sys.path[:0] = [str(ROOT / "tools" / "record"), str(ROOT / "datasets")]
import fpscope_record as fr  # noqa: E402
from record_lm_grads import CharLM, corpus  # noqa: E402


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


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(cases, rounds, min_seconds=0.2):
    """{name: [(wall, cpu) per call, one per round]}: interleaved rounds (every round runs every
    contender, shuffled), each sample repeating its call until it took min_seconds. cpu is
    CLOCK_THREAD_CPUTIME_ID for one thread (the call runs on the caller's thread), else the
    process's CPU time (every thread's): unlike wall time, it does not count the time other
    people's work on a shared machine holds the core. (User time alone, getrusage, counts in
    4 ms ticks here: too coarse for a 15 ms call.)"""
    reps = {}
    for name, (fn, threads) in cases.items():  # calibrate
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_seconds / 4:
            fn()
            k += 1
        reps[name] = max(1, int(k * 4 * min_seconds / max(time.perf_counter() - t0, 1e-9) / 4))
    out = {name: [] for name in cases}
    rng = random.Random(1)
    for _ in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            fn, threads = cases[name]
            clock = time.thread_time if threads == 1 else time.process_time
            w, c = time.perf_counter(), clock()
            for _ in range(reps[name]):
                fn()
            out[name].append(((time.perf_counter() - w) / reps[name], (clock() - c) / reps[name]))
    return out


def throughput(args):
    x = (np.random.default_rng(0).standard_normal(args.values) * np.exp2(-np.random.default_rng(1).integers(0, 31, args.values))).astype(np.float32)
    cores = os.cpu_count() or 1
    summary = fr._module_summary()
    if summary is None:
        print("## Throughput: the fpscope module is not importable (PYTHONPATH=build/lib/python)\n")
        return
    from fpscope import bucket_histogram

    ts, bh = "tensor_summary (histogram + statistics)", "bucket_histogram alone"
    cases = {(ts, 1): (lambda: summary(x, 1), 1), (ts, cores): (lambda: summary(x, cores), cores),
             (bh, 1): (lambda: bucket_histogram(x, threads=1), 1),
             (bh, cores): (lambda: bucket_histogram(x, threads=cores), cores)}
    if args.numpy:
        cases[("NumPy histogram() + tensor_stats()", 1)] = (lambda: (fr.histogram(x), fr.tensor_stats(x)), 1)
    times = timed(cases, args.rounds)
    print(f"## Throughput: {args.values:.2e} float32 values, {args.rounds} interleaved rounds, {cores} cores, "
          f"{cpu_name()}\n")
    print("CPU: the calling thread's CPU time for 1 thread, the process's for more; best and median over "
          "rounds. Per core: values / CPU time.\n")
    print("| path | threads | best CPU | median CPU | values/s per core (best CPU) | best wall | median wall "
          "| values/s (best wall) |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, th), v in times.items():
        wall, cpu = [a for a, _ in v], [b for _, b in v]
        print(f"| {name} | {th} | {min(cpu) * 1e3:.2f} ms | {statistics.median(cpu) * 1e3:.2f} ms "
              f"| {args.values / min(cpu):.3g} | {min(wall) * 1e3:.2f} ms | {statistics.median(wall) * 1e3:.2f} ms "
              f"| {args.values / min(wall):.3g} |")
    one = args.values / min(c for _, c in times[(ts, 1)])
    print(f"\ngoal: histogram + statistics >= 1e9 values/s per core (1 thread, best CPU time): "
          f"{'PASS' if one >= 1e9 else 'MISS'} ({one:.3g})\n")

    # What the recorder pays per tensor whatever its size: the C++ call's fixed cost (the
    # 2^16-bucket tables), on the 28 gradient tensors of the overhead benchmark's model among others.
    model, _, step = trainer("cpu", args.corpus)
    step()
    grads = [p.grad.detach().numpy().reshape(-1).copy() for p in model.parameters() if p.grad is not None]
    small = {f"{n} values": (lambda a=np.resize(x, n): summary(a, 1), 1) for n in (1, 64, 4096, 65536)}
    small[f"the char LM's {len(grads)} gradients ({sum(g.size for g in grads)} values), one call each"] = (
        lambda: [summary(g, 1) for g in grads], 1)
    times = timed(small, args.rounds, min_seconds=0.1)
    print("## Fixed cost: tensor_summary on 1 thread, small tensors\n")
    print("| input | best CPU per call | median CPU per call |")
    print("|---|---|---|")
    for name, v in times.items():
        cpu = [b for _, b in v]
        print(f"| {name} | {min(cpu) * 1e6:.1f} us | {statistics.median(cpu) * 1e6:.1f} us |")
    print()


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
    print(f"# record_bench.py: {platform.node()}, {cpu_name()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    if args.only != "throughput":
        overhead(args)
    if args.only != "overhead":
        throughput(args)


if __name__ == "__main__":
    main()
