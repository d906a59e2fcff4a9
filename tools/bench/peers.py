"""Peer conversions (numpy, torch, ml_dtypes) for fpscope-bench-convert: float32 -> fp16, bf16,
e4m3, e5m2, each by every API a user would call. The data sets are one float32 array; "output"
saves a peer's codes, compared with fpscope's bit for bit.

Served by peer_serve.py (`peer_serve.py peers.py --list` prints what is available here).
"""

import numpy as np

from peer_serve import Peer, ml_dtypes, torch


class Data:
    def __init__(self, arrays):
        self.x = arrays[0]
        self.t = torch.from_numpy(self.x) if torch is not None else None  # shares the memory
        self.outs = {}

    def out(self, key, make):
        if key not in self.outs:
            o = make()
            if isinstance(o, np.ndarray):  # fault the pages in before any timing
                o.view(np.uint8).fill(0)
            else:
                o.zero_()
            self.outs[key] = o
        return self.outs[key]


def numpy_peers():
    yield Peer("numpy.fp16.astype", "numpy", "x.astype(np.float16)",
               lambda d: (lambda: d.x.astype(np.float16)), codes=np.uint16, format="fp16")

    def copyto(d):
        o = d.out("np.f2", lambda: np.empty(len(d.x), np.float16))
        return lambda: (np.copyto(o, d.x, casting="unsafe"), o)[1]  # the codes, for output
    yield Peer("numpy.fp16.copyto", "numpy", "np.copyto(o16, x, casting='unsafe')", copyto, codes=np.uint16,
               format="fp16")


def torch_peers():
    for fmt, dt, name in (("fp16", torch.float16, "half"), ("bf16", torch.bfloat16, "bfloat16")):
        yield Peer(f"torch.{fmt}.{name}", "torch", f"t.{name}()",
                   (lambda name_: lambda d: getattr(d.t, name_))(name), threaded=True, codes=np.uint16, format=fmt)

        def copy(d, dt_=dt, fmt_=fmt):
            o = d.out("torch." + fmt_, lambda: torch.empty(len(d.x), dtype=dt_))
            return lambda: o.copy_(d.t)
        yield Peer(f"torch.{fmt}.copy_", "torch", f"o.copy_(t)  # o: torch.{str(dt).split('.')[-1]}", copy,
                   threaded=True, codes=np.uint16, format=fmt)


def ml_dtypes_peers():
    for fmt, name, u in (("bf16", "bfloat16", np.uint16), ("e4m3", "float8_e4m3fn", np.uint8),
                         ("e5m2", "float8_e5m2", np.uint8)):
        dt = getattr(ml_dtypes, name)
        yield Peer(f"ml_dtypes.{fmt}.astype", "ml_dtypes", f"x.astype(ml_dtypes.{name})",
                   (lambda dt_: lambda d: (lambda: d.x.astype(dt_)))(dt), codes=u, format=fmt)

        def copyto(d, dt_=dt, name_=name):
            o = d.out("ml." + name_, lambda: np.empty(len(d.x), dt_))
            return lambda: (np.copyto(o, d.x, casting="unsafe"), o)[1]  # the codes, for output
        yield Peer(f"ml_dtypes.{fmt}.copyto", "ml_dtypes", f"np.copyto(o, x, casting='unsafe')  # o: ml_dtypes.{name}",
                   copyto, codes=u, format=fmt)


KNOWN = [
    ("numpy.fp16.astype", "fp16", "numpy"), ("numpy.fp16.copyto", "fp16", "numpy"),
    ("torch.fp16.half", "fp16", "torch"), ("torch.fp16.copy_", "fp16", "torch"),
    ("torch.bf16.bfloat16", "bf16", "torch"), ("torch.bf16.copy_", "bf16", "torch"),
    ("ml_dtypes.bf16.astype", "bf16", "ml_dtypes"), ("ml_dtypes.bf16.copyto", "bf16", "ml_dtypes"),
    ("ml_dtypes.e4m3.astype", "e4m3", "ml_dtypes"), ("ml_dtypes.e4m3.copyto", "e4m3", "ml_dtypes"),
    ("ml_dtypes.e5m2.astype", "e5m2", "ml_dtypes"), ("ml_dtypes.e5m2.copyto", "e5m2", "ml_dtypes"),
]
