"""A recording process for the crash tests (test_crash.py), deterministic so that a re-run
reproduces every step bit for bit.

    python record_child.py OUT.h5 --kind torch --steps 40
        a real PyTorch training loop (an MLP on fixed random data, SGD, seed 0, one thread)
        recording every step: "both" on most steps, "hist" on every 3rd, "raw" on every 5th
        (--operands: and the GEMM operands of every Linear, Recorder.watch, every 2nd step)
    python record_child.py OUT.h5 --kind numpy --steps 10
        no torch: gradients drawn by numpy (seed 0), with zeros, infs, NaNs, subnormals, an
        empty tensor, float16 and bfloat16 tensors, and at step 2 one tensor of 2^20 + 5
        elements (2 chunks); "both", "hist", "raw" in turn

    python record_child.py OUT.h5 --kind numpy --naive
        the same steps written the plain way (h5py defaults: each step group created in /steps
        directly, filled, marked @complete, then the file flushed): the negative control

As each step's write completes (the recorder's on_written, from its writer thread) it prints
"recorded STEP" and, with --marks FILE, appends an 'M' record (type, step, 0 as in writelog.c)
to FILE: the steps the recorder says are on disk.

    --marks-by flush   the marks come from flush() instead: every 3rd step (and at the end,
                       after close()) the loop calls flush() and, when it returns, marks every
                       step recorded so far (from the training thread; on_written is unused)
    --sync             background=False: record() writes the step itself (the marks then
                       come when record() returns)
"""

import argparse
import os
import pathlib
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools" / "record"))
from fpscope_record import Recorder  # noqa: E402


def numpy_steps(steps):
    """(step, {name: array}, loss, mode) of the numpy kind; deterministic."""
    import ml_dtypes  # noqa: F401  (bfloat16 arrays)

    rng = np.random.default_rng(0)
    for step in range(steps):
        g = {}
        for i in range(2):
            g[f"layer{i}/weight"] = (rng.standard_normal(257 * (i + 1)) * 2.0 ** -rng.integers(0, 30)).astype(np.float32)
        special = rng.standard_normal(64).astype(np.float32)
        special[:5] = [0.0, -0.0, np.inf, np.nan, 1e-42]
        g["special%"] = special
        g["empty"] = np.zeros((0, 3), np.float32)
        g["half"] = (rng.standard_normal((4, 5)) * 1e-3).astype(np.float16)
        g["bf16"] = np.asarray(rng.standard_normal(33), dtype=np.float32).astype(ml_dtypes.bfloat16)
        if step == 2:
            g["big"] = rng.standard_normal((1 << 20) + 5).astype(np.float32)
        mode = ("both", "hist", "raw")[step % 3]
        yield step, g, float(step) / 3, mode


def torch_steps(steps, on_model=None):
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    if on_model is not None:
        on_model(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    for step in range(steps):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        mode = "raw" if step % 5 == 4 else "hist" if step % 3 == 2 else "both"
        yield step, net.named_parameters(), loss.item(), mode
        opt.step()


def naive(args, steps, marks):
    import fpscope_record as fr

    with h5py.File(args.out, "w") as f:
        f.attrs["fpscope_trace_version"] = np.int32(1)
        f.attrs["producer"], f.attrs["model"], f.attrs["created"] = "naive", "naive", "2000-01-01T00:00:00Z"
        f.create_group("steps")
        f.flush()
        for step, tensors, loss, mode in steps:
            g = f.create_group(f"steps/{step:08d}")
            for k, v in (("step", np.int64(step)), ("loss", loss), ("lr", 0.05), ("loss_scale", 1.0)):
                g.attrs[k] = v
            t = g.create_group("tensors", track_order=True)
            for name, dtype, shape, raw in fr._tensors(tensors, None):
                fr._write_tensor(t.create_group(fr.escape(name)), dtype, shape, raw, mode)
            g.attrs["complete"] = np.int8(1)
            f.flush()
            if marks is not None:
                os.write(marks, b"M" + struct.pack("<QQ", step, 0))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--kind", choices=("torch", "numpy"), default="torch")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--marks")
    ap.add_argument("--naive", action="store_true")
    ap.add_argument("--marks-by", choices=("written", "flush"), default="written")
    ap.add_argument("--sync", action="store_true")
    ap.add_argument("--operands", action="store_true", help="torch: also the GEMM operands of every Linear, every 2nd step")
    args = ap.parse_args()
    marks = os.open(args.marks, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if args.marks else None
    watch = (lambda net: rec.watch(net, every=2)) if args.operands else None  # noqa: E731  (rec: made below, before the first step)
    steps = torch_steps(args.steps, watch) if args.kind == "torch" else numpy_steps(args.steps)
    if args.naive:
        return naive(args, steps, marks)

    def mark(step):
        if marks is not None:
            os.write(marks, b"M" + struct.pack("<QQ", step, 0))
        print(f"recorded {step}", flush=True)

    by_flush = args.marks_by == "flush"
    done = []
    rec = Recorder(args.out, f"record_child.py --kind {args.kind}", created="2000-01-01T00:00:00Z",
                   dtype="float32" if args.kind == "torch" else None, max_steps=max(args.steps, 1),
                   background=not args.sync, on_written=None if by_flush else mark)
    with rec:
        for step, tensors, loss, mode in steps:
            rec.record(step, tensors, loss=loss, lr=0.05, mode=mode)
            done.append(step)
            if by_flush and step % 3 == 2:
                rec.flush()
                while done:
                    mark(done.pop(0))
    if by_flush:
        for step in done:  # close() returned
            mark(step)


if __name__ == "__main__":
    main()
