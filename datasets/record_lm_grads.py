#!/usr/bin/env python3
"""Record real gradients: a small character-level transformer language model trained with
Debian's PyTorch (CPU) on the licence texts in /usr/share/common-licenses (real English
text present on every Debian machine). Every parameter's gradient at the chosen steps is
flattened and concatenated (model.parameters() order) into one float32 .npy per step.

    /usr/bin/python3 datasets/record_lm_grads.py            # writes datasets/lm-grads/

Deterministic: seed 0, one thread, fixed corpus order. The exact run that produced the
committed files is this script with its defaults; see datasets/README.md.
"""

import argparse
import json
import os
import pathlib

import numpy as np
import torch
from torch import nn


def corpus(root):
    names = sorted(p for p in pathlib.Path(root).iterdir() if p.is_file() and not p.is_symlink())
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in names), [p.name for p in names]


class CharLM(nn.Module):
    def __init__(self, vocab, d_model, layers, heads, context):
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(context, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0, batch_first=True)
        self.body = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d_model, vocab)
        mask = torch.triu(torch.full((context, context), float("-inf")), diagonal=1)
        self.register_buffer("mask", mask)

    def forward(self, x):
        h = self.embed(x) + self.pos[: x.shape[1]]
        return self.head(self.body(h, mask=self.mask[: x.shape[1], : x.shape[1]]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share/common-licenses")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "lm-grads"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--record", default="1,10,100,300", help="steps whose gradients are saved")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    text, files = corpus(args.corpus)
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    context, batch = 64, 32
    model = CharLM(len(chars), d_model=64, layers=2, heads=4, context=context)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    record = {int(s) for s in args.record.split(",")}
    gen = torch.Generator().manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    meta = {"script": "datasets/record_lm_grads.py", "seed": args.seed, "steps": args.steps,
            "corpus": args.corpus, "corpus_files": files, "corpus_chars": len(text), "vocab": len(chars),
            "model": "char transformer d_model=64 layers=2 heads=4 context=64", "batch": batch,
            "optimizer": "Adam lr=3e-3", "torch": torch.__version__,
            "parameters": [[n, list(p.shape)] for n, p in model.named_parameters()], "recorded": []}
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(data) - context - 1, (batch,), generator=gen)
        x = torch.stack([data[i : i + context] for i in idx])
        y = torch.stack([data[i + 1 : i + context + 1] for i in idx])
        loss = nn.functional.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step in record:
            g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy().astype(np.float32)
            name = f"step{step:04d}.npy"
            np.save(os.path.join(args.out, name), g)
            meta["recorded"].append({"step": step, "file": name, "loss": float(loss), "elements": int(g.size)})
            print(f"step {step:4d}  loss {float(loss):.4f}  saved {name} ({g.size} gradients)")
        opt.step()
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
