#!/usr/bin/env python3
"""Peer scale sweeps (numpy, torch, ml_dtypes) for fpscope-bench-hist.

What fpscope's class_counter answers in one pass ("multiplied by S and cast to F, how many
values vanish, go subnormal, stay normal, overflow?") is done here the way a user does it
today: for every scale, multiply, cast, and count with comparisons on the cast result.

    y = x * np.float32(S)                      # torch: t * S
    q = y.astype(F)                            # torch: y.half() / y.bfloat16()
    n0 = count(q == 0)                         # zeros of x + underflows
    ns = count(abs(q) < finfo(F).tiny)         # n0 + subnormals
    nf = count(~isfinite(q))                   # nonfinite x + overflows (inf, or NaN for e4m3fn)

The counts of x == 0 and of nonfinite x are taken once per array, when it is loaded (a user
would also do that once), and are not timed.

The benchmark starts this script once as a subprocess and talks to it in JSON lines on
stdin/stdout, one request and one reply per line, so that it can interleave the peers' sweeps
with its own. Arrays come as .npy files and are checked against the benchmark's checksum.

Requests ({"cmd": ...}):
  hello                                   -> versions, peers available, peers skipped (with why)
  load   name path sum xor                -> loads an .npy float32 array, checks its checksum
  sweep  data peer threads scales         -> seconds for the whole list of scales (one call),
                                             and the class counts per scale: [zero, underflow,
                                             subnormal, normal, overflow, nonfinite]
  forget name
  quit

Run by hand: `hist_peers.py --list` prints what is available here.
"""

import gc
import sys
import time
import warnings

import numpy as np

from peer_serve import Threads, available as available_of, hello_reply, load_checked, main as peer_main, ml_dtypes, serve as \
    serve_requests, torch

# Overflow in a cast is what is being counted, not a problem: keep stderr clean.
np.seterr(all="ignore")
warnings.simplefilter("ignore", RuntimeWarning)


class Data:
    def __init__(self, x):
        self.x = x
        self.t = torch.from_numpy(x) if torch is not None else None  # shares the memory
        self.n = int(len(x))
        self.zeros = int(np.count_nonzero(x == 0))
        self.nonfinite = int(np.count_nonzero(~np.isfinite(x)))


def classes(d, n0, ns, nf):
    """[zero, underflow, subnormal, normal, overflow, nonfinite] from the three counts."""
    return [d.zeros, n0 - d.zeros, ns - n0, d.n - ns - nf, nf - d.nonfinite, d.nonfinite]


def numpy_sweep(dt):
    tiny = (np.finfo(dt) if dt is np.float16 else ml_dtypes.finfo(dt)).tiny

    def sweep(d, scales):
        out = []
        for s in scales:
            q = (d.x * np.float32(s)).astype(dt)
            out.append(classes(d, np.count_nonzero(q == 0), np.count_nonzero(np.abs(q) < tiny),
                               np.count_nonzero(~np.isfinite(q))))
        return out
    return sweep


def torch_sweep(dt, name):
    tiny = torch.finfo(dt).tiny

    def sweep(d, scales):
        out = []
        for s in scales:
            q = getattr(d.t * float(s), name)()
            out.append(classes(d, int((q == 0).sum()), int((q.abs() < tiny).sum()),
                               int((~torch.isfinite(q)).sum())))
        return out
    return sweep


class Peer:
    """One library's way of counting the classes of one format over a list of scales."""

    def __init__(self, pid, fmt, lib, api, sweep, threaded=False):
        self.id, self.format, self.lib, self.api = pid, fmt, lib, api
        self.sweep = sweep        # sweep(data, scales) -> counts per scale
        self.threaded = threaded  # obeys torch.set_num_threads


COUNT = "count(q == 0), count(abs(q) < tiny), count(~isfinite(q))"


def numpy_peers():
    yield Peer("numpy.fp16", "fp16", "numpy", f"q = (x * np.float32(S)).astype(np.float16); {COUNT}",
               numpy_sweep(np.float16))


def torch_peers():
    for fmt, dt, name in (("fp16", torch.float16, "half"), ("bf16", torch.bfloat16, "bfloat16")):
        yield Peer(f"torch.{fmt}", fmt, "torch", f"q = (t * S).{name}(); {COUNT}", torch_sweep(dt, name),
                   threaded=True)


def ml_dtypes_peers():
    for fmt, name in (("bf16", "bfloat16"), ("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")):
        yield Peer(f"ml_dtypes.{fmt}", fmt, "ml_dtypes",
                   f"q = (x * np.float32(S)).astype(ml_dtypes.{name}); {COUNT}",
                   numpy_sweep(getattr(ml_dtypes, name)))


# Every peer the benchmark knows, available or not: a missing one is reported, never dropped.
KNOWN = [
    ("numpy.fp16", "fp16", "numpy"), ("torch.fp16", "fp16", "torch"), ("torch.bf16", "bf16", "torch"),
    ("ml_dtypes.bf16", "bf16", "ml_dtypes"), ("ml_dtypes.e4m3", "e4m3", "ml_dtypes"),
    ("ml_dtypes.e5m2", "e5m2", "ml_dtypes"),
]


def available():
    return available_of(KNOWN, numpy_peers, torch_peers, ml_dtypes_peers)


def serve():
    peers, skipped = available()
    data = {}
    threads = Threads()

    def hello(_):
        return hello_reply(peers, skipped, KNOWN)

    def load(req):
        x = load_checked(req["path"], req["sum"], req["xor"], (np.float32,))
        data[req["name"]] = Data(x)
        return {"ok": True, "n": int(len(x))}

    def sweep(req):
        p = peers[req["peer"]]
        threads.use(p, req["threads"])
        d = data[req["data"]]
        gc.disable()
        t0 = time.perf_counter()
        counts = p.sweep(d, req["scales"])
        el = time.perf_counter() - t0
        gc.enable()
        return {"s": el, "counts": counts}

    def forget(req):
        data.pop(req["name"], None)
        gc.collect()
        return {"ok": True}

    serve_requests({"hello": hello, "load": load, "sweep": sweep, "forget": forget})


if __name__ == "__main__":
    sys.exit(peer_main(__doc__, serve, available, lambda p: f"{p.id:24} {p.format:5} {p.api}"))
