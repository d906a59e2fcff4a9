#!/usr/bin/env python3
"""Record a GEMM operand trace (docs/trace.md, "GEMM operands") of a real transformer language
model trained from scratch on the CPU: a decoder-only, GPT-style character model (4 layers,
d_model 256, 4 heads, MLP 1024, context 32; 3.2 M parameters, every projection an nn.Linear)
trained with Debian's PyTorch on the licence texts in /usr/share/common-licenses (the corpus of
record_lm_grads.py). Every nn.Linear is watched (Recorder.watch): on every recorded step its
forward input X, weight W and output gradient dY, plus every parameter gradient (the Linear
weights' tagged wgrad), are stored as exact bucket histograms; on a few steps (--raw-steps) the
operands also get their raw values, and on some (--stats-steps) their compact block statistics
(docs/recipes.md, "Block statistics"). Values are stored as bfloat16 (rounded to nearest even from
the float32 run): the high-precision operands a BF16 mixed-precision run hands its FP8/FP4
recipes, and half the bytes.

    PYTHONPATH=build/lib/python .venv/bin/python datasets/record_lm_operands.py          # writes datasets/traces/lm-operands.h5
    PYTHONPATH=build/lib/python .venv/bin/python datasets/record_lm_operands.py --check  # records again, compares byte for byte

Deterministic: seed 0, one thread, a fixed corpus order, batches drawn from a seeded generator,
a fixed @created; the same software (Debian 12, torch 1.13.0 CPU, h5py 3.7 / HDF5 1.10.8)
writes the same bytes. `fpscope recipes datasets/traces/lm-operands.h5` reads it.
"""

import argparse
import filecmp
import math
import pathlib
import sys
import tempfile
import time

import torch
from torch import nn

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here.parent / "tools" / "record"))
sys.path.insert(0, str(here))
from fpscope_record import Recorder  # noqa: E402
from record_lm_grads import corpus  # noqa: E402


class Block(nn.Module):
    """Pre-norm decoder block: causal self-attention (qkv and out projections) and a GELU MLP."""

    def __init__(self, d, heads, ff):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads) + mask[:t, :t]
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, ff, context):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(context, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", torch.triu(torch.full((context, context), float("-inf")), diagonal=1))

    def forward(self, x):
        h = self.embed(x) + self.pos[: x.shape[1]]
        for b in self.blocks:
            h = b(h, self.mask)
        return self.head(self.ln(h))


def record(args, out):
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    text, files = corpus(args.corpus)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    context, batch, lr = 32, args.batch, 1e-3
    model = GPT(len(chars), d=256, layers=4, heads=4, ff=1024, context=context)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(args.seed)
    raw = sorted(set(args.raw_steps))
    bstats = sorted(set(args.stats_steps))
    description = (f"decoder-only char transformer LM (4 layers, d_model 256, 4 heads, MLP 1024, context {context}, "
                   f"vocabulary {len(chars)}, {params} parameters), Adam lr {lr}, batch {batch} x {context} tokens, seed "
                   f"{args.seed}, {args.steps} steps numbered from 0; corpus: the {len(files)} files of {args.corpus} "
                   f"({len(text)} characters); datasets/record_lm_operands.py; every {args.every} steps: the GEMM operands "
                   f"of every nn.Linear (X, W, dY) and every gradient as bfloat16 histograms; raw operand values too at "
                   f"steps {', '.join(map(str, raw))}; the operands' block statistics at steps {', '.join(map(str, bstats))}")
    recorded = len(range(0, args.steps, args.every))
    t0 = time.perf_counter()
    with Recorder(out, description, every=args.every, mode="hist", dtype="bfloat16", created="2026-12-06T00:00:00Z",
                  max_steps=recorded, on_scale_change=False, on_nonfinite=False) as rec:
        rec.watch(model, layers="*", every=args.every)
        for step in range(args.steps):
            idx = torch.randint(0, len(data) - context - 1, (batch,), generator=gen)
            x = torch.stack([data[i : i + context] for i in idx])
            y = torch.stack([data[i + 1 : i + context + 1] for i in idx])
            loss = nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            rec.record(step, model.named_parameters(), loss=loss.item(), lr=lr,
                       operand_mode="both" if step in raw else None,
                       block_stats="operands" if step in bstats else False)
            if step % args.every == 0:
                print(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - t0:6.1f} s"
                      f"{'  (raw operands)' if step in raw else ''}", flush=True)
            opt.step()
    return params


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share/common-licenses")
    ap.add_argument("--out", default=str(here / "traces" / "lm-operands.h5"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=25, help="recorded steps (step %% every == 0)")
    ap.add_argument("--raw-steps", type=int, nargs="*", default=[275], help="recorded steps with raw operand values")
    ap.add_argument("--stats-steps", type=int, nargs="*", default=[0, 100, 200, 275],
                    help="recorded steps with the operands' block statistics (docs/recipes.md, \"Block statistics\")")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="record again into a temporary file and compare with --out")
    args = ap.parse_args()
    if any(s % args.every or not 0 <= s < args.steps for s in args.raw_steps + args.stats_steps):
        ap.error(f"--raw-steps and --stats-steps must be recorded steps (multiples of --every {args.every} below --steps)")
    if not args.check:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record(args, args.out)
        return 0
    with tempfile.TemporaryDirectory() as d:
        again = pathlib.Path(d) / "again.h5"
        record(args, again)
        same = filecmp.cmp(again, args.out, shallow=False)
    print(f"{args.out}: {'the same bytes' if same else 'DIFFERS from a new recording'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
