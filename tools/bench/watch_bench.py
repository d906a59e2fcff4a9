"""What Recorder.watch() costs a training loop: the transformer of datasets/record_lm_operands.py
(3.2 M parameters, 128 tokens a step, one thread), Adam, gradients recorded as bfloat16
histograms, with and without watch() on its 17 nn.Linear, recording once (every 1000) or on
every step (the worst case: every operand's histogram every step). Seconds per step, including
the background writer's work (flush() at the end).

    PYTHONPATH=build/lib/python .venv/bin/python tools/bench/watch_bench.py

Indicative, on a busy 2-core machine shared by 6 builds (rerun on a quiet one):
    every 1000: no watch 1.113 s/step, watch 1.195 s/step
    every 1: no watch 1.277 s/step, watch 1.501 s/step
"""
import pathlib
import sys
import tempfile
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "datasets"), str(ROOT / "tools" / "record")]
from record_lm_operands import GPT  # noqa: E402
from fpscope_record import Recorder  # noqa: E402

torch.set_num_threads(1)
OUT = pathlib.Path(tempfile.mkdtemp()) / "watch.h5"


def run(watch, every, steps=12):
    torch.manual_seed(0)
    m = GPT(86, 256, 4, 4, 1024, 32)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    x, y = torch.randint(0, 86, (4, 32)), torch.randint(0, 86, (4, 32))
    with Recorder(OUT, "b", every=every, mode="hist", dtype="bfloat16") as rec:
        if watch:
            rec.watch(m, every=every)
        t = time.perf_counter()
        for s in range(steps):
            loss = torch.nn.functional.cross_entropy(m(x).reshape(-1, 86), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            rec.record(s, m.named_parameters())
            opt.step()
        rec.flush()
        return (time.perf_counter() - t) / steps


for every in (1000, 1):
    print(f"every {every}: no watch {run(False, every):.3f} s/step, watch {run(True, every):.3f} s/step")
