"""Records a real distributed PyTorch run, one trace per rank (tests/record/test_ranks.py, datasets/).

    python dist_child.py --kind ddp|zero|tp --world N --out DIR [--steps S] [--spike STEP]

Starts N processes with torch.multiprocessing.spawn (torch 1.13's torchrun does not start under
Python 3.11), the gloo backend on CPU, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT; each writes
DIR/rank{r}.h5 through fpscope.record.Recorder, which takes rank and world size from
torch.distributed. Kinds:

- ddp: an MLP wrapped in DistributedDataParallel, each rank its own batch; every rank records
  every parameter's (all-reduced, averaged) gradient whole: replicas.
- zero: the same MLP without DDP; the gradients are flattened into one buffer in parameter order,
  all-reduced and averaged, and each rank keeps its 1/N of the buffer (the partition of ZeRO
  stage 2 / FSDP's flat parameter, unpadded: the last rank's part may be shorter); it records,
  for each parameter that overlaps its part, that piece as a flat shard.
- tp: a column-parallel Linear (Megatron's ColumnParallelLinear: weight rows and bias split along
  dimension 0 across the ranks) then an elementwise loss, so that each rank's gradient is its rows
  of the whole layer's gradient; recorded as split shards. --single DIR/single.h5 additionally
  records the same layer unsplit in one process (the equivalent single-process run).

--spike STEP multiplies the loss by 2^20 at that step: its gradients overflow fp16 under the
GradScaler's initial scale (a skipped step whose cause each rank's file shows).
"""

import argparse
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tools", "record"))
from fpscope_record import Recorder, flat_shard, split_shard  # noqa: E402

DIMS = (16, 32, 8)


# Every rank's Recorder: fixed @created (the shipped dataset is reproducible byte for byte) and
# /steps laid out for 64 steps (the default 4096 would take 160 KiB a file).
FIXED = {"created": "2000-01-01T00:00:00Z", "max_steps": 64}


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(DIMS[0], DIMS[1]), torch.nn.ReLU(), torch.nn.Linear(DIMS[1], DIMS[2]))


def batch(rank, step):
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randn(32, DIMS[0], generator=g), torch.randint(0, DIMS[2], (32,), generator=g)


def backward(model, opt, rank, step, a):
    """The MLP's gradients of this rank's batch (the loss times 2^20 at the spike); returns the loss."""
    x, y = batch(rank, step)
    loss = torch.nn.functional.cross_entropy(model(x), y) * (2.0**20 if step == a.spike else 1.0)
    opt.zero_grad()
    loss.backward()
    return loss


def names(model):
    return [("fc1" if n.startswith("0.") else "fc2") + n[1:] for n, _ in model.named_parameters()]


def run_ddp(rank, world, a):
    model = torch.nn.parallel.DistributedDataParallel(mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model_text = f"MLP {DIMS}, SGD lr 0.1, seed 0: DDP over {world} gloo ranks (dist_child.py)"
    with Recorder(os.path.join(a.out, f"rank{rank}.h5"), model_text, **FIXED, layout={"dp": (rank, world)}) as rec:
        for step in range(a.steps):
            loss = backward(model, opt, rank, step, a)
            grads = {n: p.grad for n, p in zip(names(model.module), model.module.parameters())}
            rec.record(step, grads, loss=loss.item(), lr=0.1)
            if step != a.spike:  # a GradScaler skips the overflowing step
                opt.step()


def run_zero(rank, world, a):
    model = mlp()
    params = list(model.parameters())
    sizes = [p.numel() for p in params]
    total = sum(sizes)
    per = -(-total // world)  # ceil: every rank's part but the last is `per` elements
    lo, hi = min(rank * per, total), min((rank + 1) * per, total)
    opt = torch.optim.SGD(params, lr=0.1)
    model_text = f"MLP {DIMS}, SGD lr 0.1, seed 0: ZeRO-like flat gradient shards over {world} gloo ranks (dist_child.py)"
    with Recorder(os.path.join(a.out, f"rank{rank}.h5"), model_text, **FIXED, layout={"dp": (rank, world)}) as rec:
        for step in range(a.steps):
            loss = backward(model, opt, rank, step, a)
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            flat /= world
            grads, shards, at = {}, {}, 0
            for n, p, size in zip(names(model), params, sizes):
                a0, a1 = max(lo, at), min(hi, at + size)
                if a0 < a1:  # this parameter overlaps the rank's part
                    grads[n] = flat[a0:a1].clone()
                    shards[n] = flat_shard(n, tuple(p.shape), a0 - at)
                at += size
            rec.record(step, grads, loss=loss.item(), lr=0.1, shards=shards)
            # The optimizer step of ZeRO: each rank updates its part, then the parts are gathered;
            # here every rank applies the whole reduced gradient (the same result).
            at = 0
            for p, size in zip(params, sizes):
                p.grad.copy_(flat[at : at + size].reshape(p.shape))
                at += size
            if step != a.spike:  # a GradScaler skips the overflowing step
                opt.step()


# The tensor-parallel layer computes in float64 and its gradients are recorded as float32 (the
# recorder rounds them): a rank's rows of the product then round to the same float32 as the
# single process's, whatever order the two matrix products summed in (float32 products differ
# in the last bit where their blocking differs).
def tp_layer():
    torch.manual_seed(0)
    return torch.nn.Linear(DIMS[0], DIMS[1]).double()


def tp_batch(step):
    g = torch.Generator().manual_seed(step)
    return torch.randn(32, DIMS[0], generator=g).double(), torch.randn(32, DIMS[1], generator=g).double()


def run_tp(rank, world, a):
    full = tp_layer()
    rows = DIMS[1] // world
    part = torch.nn.Linear(DIMS[0], rows).double()
    with torch.no_grad():
        part.weight.copy_(full.weight[rank * rows : (rank + 1) * rows])
        part.bias.copy_(full.bias[rank * rows : (rank + 1) * rows])
    opt = torch.optim.SGD(part.parameters(), lr=0.1)
    shards = {"fc.weight": split_shard("fc.weight", tuple(full.weight.shape), 0, rank, world),
              "fc.bias": split_shard("fc.bias", tuple(full.bias.shape), 0, rank, world)}
    model_text = f"Linear {DIMS[:2]} (float64, recorded float32), SGD lr 0.1, seed 0: column-parallel over {world} gloo ranks"
    with Recorder(os.path.join(a.out, f"rank{rank}.h5"), model_text, **FIXED, layout={"tp": (rank, world)}, shards=shards) as rec:
        for step in range(a.steps):
            x, t = tp_batch(step)
            y = part(x)  # the column-parallel output: this rank's columns of the layer's
            loss = ((y - t[:, rank * rows : (rank + 1) * rows]) ** 2).sum() * (2.0**20 if step == a.spike else 1.0)
            opt.zero_grad()
            loss.backward()
            rec.record(step, {"fc.weight": part.weight.grad, "fc.bias": part.bias.grad}, lr=0.1)
            if step != a.spike:  # a GradScaler skips the overflowing step
                opt.step()


def single_tp(a):
    layer = tp_layer()
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    model_text = f"Linear {DIMS[:2]} (float64, recorded float32), SGD lr 0.1, seed 0: one process"
    with Recorder(a.single, model_text, **FIXED) as rec:
        for step in range(a.steps):
            x, t = tp_batch(step)
            loss = ((layer(x) - t) ** 2).sum() * (2.0**20 if step == a.spike else 1.0)
            opt.zero_grad()
            loss.backward()
            rec.record(step, {"fc.weight": layer.weight.grad, "fc.bias": layer.bias.grad}, lr=0.1)
            if step != a.spike:  # a GradScaler skips the overflowing step
                opt.step()


def worker(rank, world, port, a):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        {"ddp": run_ddp, "zero": run_zero, "tp": run_tp}[a.kind](rank, world, a)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", choices=("ddp", "zero", "tp"), required=True)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--spike", type=int, default=-1)
    p.add_argument("--single", default=None)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(a.world, port, a), nprocs=a.world, join=True)
    if a.single:
        torch.set_num_threads(1)
        single_tp(a)


if __name__ == "__main__":
    main()
