"""Peer arithmetic (numpy, torch, ml_dtypes) on fp16 / bf16 / e4m3 / e5m2 for fpscope-bench-arith.

Element-wise add, mul and fma (or what a user writes for it) on arrays of the low-precision
type itself, the way people compute in those formats from Python today:

    numpy      float16                       np.add(a, b, out=o), np.multiply, a*b+c in float16
    torch      float16, bfloat16 (CPU)       torch.add(a, b, out=o), torch.mul, torch.addcmul(c, a, b)
    ml_dtypes  bfloat16, float8_e4m3fn,      np.add(a, b, out=o), np.multiply (ufuncs on the
               float8_e5m2                   ml_dtypes types: float32 inside, rounded back)

A data set is the operands a, b, c as raw codes (uint16 or uint8); the peers view them as their
own dtype (no conversion) and write into a preallocated output, whose codes "output" saves.

Served by peer_serve.py (`peer_serve.py arith_peers.py --list` prints what is available here).
"""

import warnings

import numpy as np

from peer_serve import Peer, ml_dtypes, torch

# Overflow to inf and NaN operands are part of the data, not problems: keep stderr clean.
np.seterr(all="ignore")
warnings.simplefilter("ignore", RuntimeWarning)

OPS = ("add", "mul", "fma")
FIELDS = ("format", "op")
DTYPES = (np.uint16, np.uint8)


class Data:
    def __init__(self, codes):
        self.codes = codes  # [a, b, c]: uint16 or uint8 arrays
        self.views = {}

    def np_view(self, dt):
        key = ("np", dt)
        if key not in self.views:
            self.views[key] = [x.view(dt) for x in self.codes]
        return self.views[key]

    def torch_view(self, dt):
        key = ("torch", dt)
        if key not in self.views:  # torch 1.13 has no uint16: through int16, then a bit view
            self.views[key] = [torch.from_numpy(x.view(np.int16)).view(dt) for x in self.codes]
        return self.views[key]


def codes_of(fmt):
    return np.uint16 if fmt in ("fp16", "bf16") else np.uint8


def np_out(x):
    o = np.empty_like(x)
    o.view(np.uint8).fill(0)  # fault the pages in before any timing
    return o


def numpy_like(fmt, dt, lib, tname):
    """numpy ufuncs on numpy's float16 or on an ml_dtypes type."""
    def make_add(d):
        a, b, _ = d.np_view(dt)
        o = np_out(a)
        return lambda: np.add(a, b, out=o)

    def make_mul(d):
        a, b, _ = d.np_view(dt)
        o = np_out(a)
        return lambda: np.multiply(a, b, out=o)

    def make_fma(d):
        a, b, c = d.np_view(dt)
        o = np_out(a)

        def f():
            np.multiply(a, b, out=o)
            return np.add(o, c, out=o)
        return f

    def peer(op, api, make, note=""):
        return Peer(f"{lib}.{fmt}.{op}", lib, f"{api}  # {tname}{note}", make, codes=codes_of(fmt), format=fmt, op=op)
    yield peer("add", "np.add(a, b, out=o)", make_add)
    yield peer("mul", "np.multiply(a, b, out=o)", make_mul)
    if lib == "numpy":
        yield peer("fma", "np.multiply(a, b, out=o); np.add(o, c, out=o)", make_fma, ": a*b+c, two roundings")


def numpy_peers():
    yield from numpy_like("fp16", np.float16, "numpy", "np.float16")


def torch_addcmul_works(dt):
    try:
        x = torch.ones(4, dtype=dt)
        torch.addcmul(x, x, x, out=torch.empty_like(x))
        return True, ""
    except Exception as e:  # noqa: BLE001
        return False, str(e).splitlines()[0]


def torch_peers():
    for fmt, dt, tname in (("fp16", torch.float16, "torch.float16"), ("bf16", torch.bfloat16, "torch.bfloat16")):
        def make(d, fn, dt_=dt):
            a, b, c = d.torch_view(dt_)
            return fn(a, b, c, torch.zeros_like(a))

        def peer(op, api, fn, note="", tname_=tname, fmt_=fmt, make_=make):
            return Peer(f"torch.{fmt_}.{op}", "torch", f"{api}  # {tname_}{note}", lambda d: make_(d, fn),
                        threaded=True, codes=np.uint16, format=fmt_, op=op)
        yield peer("add", "torch.add(a, b, out=o)", lambda a, b, c, o: lambda: torch.add(a, b, out=o))
        yield peer("mul", "torch.mul(a, b, out=o)", lambda a, b, c, o: lambda: torch.mul(a, b, out=o))
        ok, why = torch_addcmul_works(dt)
        if ok:
            yield peer("fma", "torch.addcmul(c, a, b, out=o)", lambda a, b, c, o: lambda: torch.addcmul(c, a, b, out=o))
        else:
            def two(a, b, c, o):
                def f():
                    torch.mul(a, b, out=o)
                    return torch.add(o, c, out=o)
                return f
            yield peer("fma", "torch.mul(a, b, out=o); torch.add(o, c, out=o)", two,
                       f": a*b+c, two roundings (addcmul: {why})")


def ml_dtypes_peers():
    for fmt, name in (("bf16", "bfloat16"), ("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")):
        yield from numpy_like(fmt, getattr(ml_dtypes, name), "ml_dtypes", f"ml_dtypes.{name}")


KNOWN = ([(f"numpy.fp16.{o}", "fp16", o, "numpy") for o in OPS] +
         [(f"torch.{f}.{o}", f, o, "torch") for f in ("fp16", "bf16") for o in OPS] +
         [(f"ml_dtypes.{f}.{o}", f, o, "ml_dtypes") for f in ("bf16", "e4m3", "e5m2") for o in ("add", "mul")])
