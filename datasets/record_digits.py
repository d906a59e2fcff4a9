#!/usr/bin/env python3
"""Record a trace (docs/trace.md) of a real training run: a small MLP classifying the 8x8
handwritten digits bundled with scikit-learn (sklearn.datasets.load_digits: 1,797 images, 10
classes; Debian's python3-sklearn ships them, nothing is downloaded), trained with Adam on
Debian's PyTorch (CPU). Every 2nd step's gradients are recorded with their raw float32 values
and their exact bucket histograms (mode "both").

    .venv/bin/python datasets/record_digits.py        # writes datasets/traces/digits-mlp.h5

Deterministic: seed 0, one thread. Pixels are scaled to [0, 1]; the last 297 images are held out
and the final test accuracy is printed.
"""

import argparse
import pathlib
import sys

import torch
from sklearn.datasets import load_digits
from torch import nn

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "tools" / "record"))
from fpscope_record import Recorder  # noqa: E402


def model(sizes):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(here / "traces" / "digits-mlp.h5"))
    ap.add_argument("--sizes", default="64,32,32,10", help="layer widths")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    test = 297
    xtr, ytr, xte, yte = x[:-test], y[:-test], x[-test:], y[-test:]
    sizes = [int(s) for s in args.sizes.split(",")]
    net = model(sizes)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)

    description = (f"MLP {'-'.join(map(str, sizes))} (ReLU) on sklearn load_digits (8x8 pixels / 16; first"
                   f" {len(xtr)} images for training, last {test} held out), cross-entropy, Adam lr {args.lr},"
                   f" batch {args.batch}, seed {args.seed}, {args.steps} steps numbered from 0, recorded every"
                   f" {args.every} steps (values and histograms); datasets/record_digits.py")

    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    recorded = (args.steps + args.every - 1) // args.every
    with Recorder(args.out, description, every=args.every, mode="both", max_steps=recorded) as rec:
        perm, at = torch.randperm(len(xtr), generator=gen), 0
        for step in range(args.steps):
            if at + args.batch > len(xtr):
                perm, at = torch.randperm(len(xtr), generator=gen), 0
            idx = perm[at : at + args.batch]
            at += args.batch
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            rec.record(step, net.named_parameters(), loss=loss.item(), lr=args.lr)
            opt.step()
            if step % 100 == 0 or step == args.steps - 1:
                print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
        with torch.no_grad():
            accuracy = float((net(xte).argmax(1) == yte).float().mean())
    print(f"test accuracy {accuracy:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
