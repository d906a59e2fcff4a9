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
would also do that once), and are not timed. The data sets are one float32 array; the
benchmark times a peer with "call" and the list of scales as its argument: the reply's result
holds the class counts per scale, [zero, underflow, subnormal, normal, overflow, nonfinite].

Served by peer_serve.py (`peer_serve.py hist_peers.py --list` prints what is available here).
"""

import warnings

import numpy as np

from peer_serve import Peer, ml_dtypes, torch

# Overflow in a cast is what is being counted, not a problem: keep stderr clean.
np.seterr(all="ignore")
warnings.simplefilter("ignore", RuntimeWarning)


class Data:
    def __init__(self, arrays):
        self.x = arrays[0]
        self.t = torch.from_numpy(self.x) if torch is not None else None  # shares the memory
        self.n = int(len(self.x))
        self.zeros = int(np.count_nonzero(self.x == 0))
        self.nonfinite = int(np.count_nonzero(~np.isfinite(self.x)))


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


def sweep_peer(pid, fmt, lib, api, sweep, threaded=False):
    """A peer whose callable counts the classes over a list of scales: sweep(data, scales)."""
    return Peer(pid, lib, api, lambda d: (lambda scales: sweep(d, scales)), threaded=threaded, format=fmt)


COUNT = "count(q == 0), count(abs(q) < tiny), count(~isfinite(q))"


def numpy_peers():
    yield sweep_peer("numpy.fp16", "fp16", "numpy", f"q = (x * np.float32(S)).astype(np.float16); {COUNT}",
                     numpy_sweep(np.float16))


def torch_peers():
    for fmt, dt, name in (("fp16", torch.float16, "half"), ("bf16", torch.bfloat16, "bfloat16")):
        yield sweep_peer(f"torch.{fmt}", fmt, "torch", f"q = (t * S).{name}(); {COUNT}", torch_sweep(dt, name),
                         threaded=True)


def ml_dtypes_peers():
    for fmt, name in (("bf16", "bfloat16"), ("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")):
        yield sweep_peer(f"ml_dtypes.{fmt}", fmt, "ml_dtypes",
                         f"q = (x * np.float32(S)).astype(ml_dtypes.{name}); {COUNT}",
                         numpy_sweep(getattr(ml_dtypes, name)))


KNOWN = [
    ("numpy.fp16", "fp16", "numpy"), ("torch.fp16", "fp16", "torch"), ("torch.bf16", "bf16", "torch"),
    ("ml_dtypes.bf16", "bf16", "ml_dtypes"), ("ml_dtypes.e4m3", "e4m3", "ml_dtypes"),
    ("ml_dtypes.e5m2", "e5m2", "ml_dtypes"),
]
