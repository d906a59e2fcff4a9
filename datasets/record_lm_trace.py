#!/usr/bin/env python3
"""Record a trace (docs/trace.md) of a real training run: the character-level transformer
language model of record_lm_grads.py (same model, corpus, optimizer and seed), trained with
Debian's PyTorch (CPU) on the licence texts in /usr/share/common-licenses. Every step's
training runs 400 steps (numbered from 1); the first step and every 2nd step after it are
recorded (201 steps), as exact bucket histograms (mode "hist", compact), and step 1 and every
50th step also with their raw float32 values (mode "both").

    .venv/bin/python datasets/record_lm_trace.py      # writes datasets/traces/lm-char.h5

Deterministic: seed 0, one thread, fixed corpus order; steps are numbered from 1 like
record_lm_grads.py, so steps 1, 10, 100 and 300 here hold the gradients of
lm-grads/step0001.npy ... step0300.npy (values at 1, 100, 300; histograms at all four).
"""

import argparse
import pathlib
import sys

import torch
from torch import nn

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "tools" / "record"))
sys.path.insert(0, str(here))
from fpscope_record import Recorder  # noqa: E402
from record_lm_grads import CharLM, corpus  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share/common-licenses")
    ap.add_argument("--out", default=str(here / "traces" / "lm-char.h5"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=2, help="steps recorded (and step 1)")
    ap.add_argument("--raw-every", type=int, default=50, help="recorded steps that also get raw values (and step 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    text, files = corpus(args.corpus)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    context, batch, lr = 64, 32, 3e-3
    model = CharLM(len(chars), d_model=64, layers=2, heads=4, context=context)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(args.seed)
    description = (f"char-level transformer LM (d_model 64, 2 layers, 4 heads, context 64, vocabulary {len(chars)}),"
                   f" Adam lr {lr}, batch {batch}, seed {args.seed}, {args.steps} steps numbered from 1;"
                   f" corpus: the {len(files)} files of {args.corpus} ({len(text)} characters);"
                   f" datasets/record_lm_trace.py; recorded: step 1 and every {args.every} steps, histograms;"
                   f" raw values too at step 1 and every {args.raw_every} steps")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    recorded = 1 + args.steps // args.every
    with Recorder(args.out, description, every=1, mode="hist", max_steps=recorded) as rec:
        for step in range(1, args.steps + 1):
            idx = torch.randint(0, len(data) - context - 1, (batch,), generator=gen)
            x = torch.stack([data[i : i + context] for i in idx])
            y = torch.stack([data[i + 1 : i + context + 1] for i in idx])
            loss = nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            both = step == 1 or step % args.raw_every == 0
            if step == 1 or step % args.every == 0:
                rec.record(step, model.named_parameters(), loss=loss.item(), lr=lr, mode="both" if both else "hist")
            if both:
                print(f"step {step:4d}  loss {loss.item():.4f}  (values and histogram)", flush=True)
            opt.step()


if __name__ == "__main__":
    main()
