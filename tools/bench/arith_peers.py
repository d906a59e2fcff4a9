#!/usr/bin/env python3
"""Peer arithmetic (numpy, torch, ml_dtypes) on fp16 / bf16 / e4m3 / e5m2 for fpscope-bench-arith.

Element-wise add, mul and fma (or what a user writes for it) on arrays of the low-precision
type itself, the way people compute in those formats from Python today:

    numpy      float16                       np.add(a, b, out=o), np.multiply, a*b+c in float16
    torch      float16, bfloat16 (CPU)       torch.add(a, b, out=o), torch.mul, torch.addcmul(c, a, b)
    ml_dtypes  bfloat16, float8_e4m3fn,      np.add(a, b, out=o), np.multiply (ufuncs on the
               float8_e5m2                   ml_dtypes types: float32 inside, rounded back)

The benchmark starts this script once as a subprocess and talks to it in JSON lines on
stdin/stdout, one request and one reply per line, so that it can interleave the peers'
repetitions with its own: both then see the same machine state. The operands come as .npy
files of raw codes (uint16 or uint8) and are checked against the benchmark's checksums; the
peers view them as their own dtype (no conversion) and write into a preallocated output.

Requests ({"cmd": ...}):
  hello                                 -> versions, peers available, peers skipped (with why)
  load   name paths[3] sums[3] xors[3]  -> loads the operands a, b, c of a data set (.npy codes)
  output data peer path                 -> runs the peer once, saves its result codes as .npy
  time   data peer threads min_s [warm_s]  -> seconds per call: calls repeated for >= min_s (after
                                             untimed calls for warm_s)
  forget name
  quit

Run by hand: `arith_peers.py --list` prints what is available here.
"""

import gc
import sys
import warnings

import numpy as np

from peer_serve import Threads, as_codes, available as available_of, hello_reply, load_checked, main as peer_main, ml_dtypes, serve as \
    serve_requests, timed, torch

# Overflow to inf and NaN operands are part of the data, not problems: keep stderr clean.
np.seterr(all="ignore")
warnings.simplefilter("ignore", RuntimeWarning)

OPS = ("add", "mul", "fma")


class Peer:
    """One operation in one format by one library."""

    def __init__(self, pid, fmt, op, lib, api, make, threaded=False):
        self.id, self.format, self.op, self.lib, self.api = pid, fmt, op, lib, api
        self.make = make          # make(data) -> (zero-argument callable doing one call, output)
        self.threaded = threaded  # obeys torch.set_num_threads


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


def np_out(x):
    o = np.empty_like(x)
    o.view(np.uint8).fill(0)  # fault the pages in before any timing
    return o


def numpy_like(fmt, dt, lib, tname):
    """numpy ufuncs on numpy's float16 or on an ml_dtypes type."""
    def make_add(d):
        a, b, _ = d.np_view(dt)
        o = np_out(a)
        return (lambda: np.add(a, b, out=o)), o

    def make_mul(d):
        a, b, _ = d.np_view(dt)
        o = np_out(a)
        return (lambda: np.multiply(a, b, out=o)), o

    def make_fma(d):
        a, b, c = d.np_view(dt)
        o = np_out(a)

        def f():
            np.multiply(a, b, out=o)
            np.add(o, c, out=o)
        return f, o
    yield Peer(f"{lib}.{fmt}.add", fmt, "add", lib, f"np.add(a, b, out=o)  # {tname}", make_add)
    yield Peer(f"{lib}.{fmt}.mul", fmt, "mul", lib, f"np.multiply(a, b, out=o)  # {tname}", make_mul)
    if lib == "numpy":
        yield Peer(f"{lib}.{fmt}.fma", fmt, "fma", lib,
                   f"np.multiply(a, b, out=o); np.add(o, c, out=o)  # {tname}: a*b+c, two roundings",
                   make_fma)


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
            o = torch.zeros_like(a)
            return fn(a, b, c, o), o
        yield Peer(f"torch.{fmt}.add", fmt, "add", "torch", f"torch.add(a, b, out=o)  # {tname}",
                   lambda d, m=make: m(d, lambda a, b, c, o: lambda: torch.add(a, b, out=o)), threaded=True)
        yield Peer(f"torch.{fmt}.mul", fmt, "mul", "torch", f"torch.mul(a, b, out=o)  # {tname}",
                   lambda d, m=make: m(d, lambda a, b, c, o: lambda: torch.mul(a, b, out=o)), threaded=True)
        ok, why = torch_addcmul_works(dt)
        if ok:
            yield Peer(f"torch.{fmt}.fma", fmt, "fma", "torch", f"torch.addcmul(c, a, b, out=o)  # {tname}",
                       lambda d, m=make: m(d, lambda a, b, c, o: lambda: torch.addcmul(c, a, b, out=o)),
                       threaded=True)
        else:
            def two(a, b, c, o):
                def f():
                    torch.mul(a, b, out=o)
                    torch.add(o, c, out=o)
                return f
            yield Peer(f"torch.{fmt}.fma", fmt, "fma", "torch",
                       f"torch.mul(a, b, out=o); torch.add(o, c, out=o)  # {tname}: a*b+c, two roundings "
                       f"(addcmul: {why})", lambda d, m=make, f=two: m(d, f), threaded=True)


def ml_dtypes_peers():
    for fmt, name in (("bf16", "bfloat16"), ("e4m3", "float8_e4m3fn"), ("e5m2", "float8_e5m2")):
        yield from numpy_like(fmt, getattr(ml_dtypes, name), "ml_dtypes", f"ml_dtypes.{name}")


# Every peer the benchmark knows, available or not: a missing one is reported, never dropped.
KNOWN = ([(f"numpy.fp16.{o}", "fp16", o, "numpy") for o in OPS] +
         [(f"torch.{f}.{o}", f, o, "torch") for f in ("fp16", "bf16") for o in OPS] +
         [(f"ml_dtypes.{f}.{o}", f, o, "ml_dtypes") for f in ("bf16", "e4m3", "e5m2") for o in ("add", "mul")])


def available():
    return available_of(KNOWN, numpy_peers, torch_peers, ml_dtypes_peers)


def serve():
    peers, skipped = available()
    data, fns = {}, {}
    threads = Threads()

    def fn(dname, pid):
        if (dname, pid) not in fns:
            fns[(dname, pid)] = peers[pid].make(data[dname])
        return fns[(dname, pid)]

    def hello(_):
        return hello_reply(peers, skipped, KNOWN, ("format", "op"))

    def load(req):
        codes = [load_checked(path, s_want, x_want, (np.uint16, np.uint8), word=None)
                 for path, s_want, x_want in zip(req["paths"], req["sums"], req["xors"])]
        data[req["name"]] = Data(codes)
        return {"ok": True, "n": int(len(codes[0]))}

    def output(req):
        f, o = fn(req["data"], req["peer"])
        f()
        np.save(req["path"], as_codes(o, data[req["data"]].codes[0].dtype))
        return {"ok": True}

    def time_(req):
        p = peers[req["peer"]]
        threads.use(p, req["threads"])
        f, _ = fn(req["data"], p.id)
        return timed(f, req["min_s"], req.get("warm_s", 0))

    def forget(req):
        data.pop(req["name"], None)
        for k in [k for k in fns if k[0] == req["name"]]:
            del fns[k]
        gc.collect()
        return {"ok": True}

    serve_requests({"hello": hello, "load": load, "output": output, "time": time_, "forget": forget})


if __name__ == "__main__":
    sys.exit(peer_main(__doc__, serve, available, lambda p: f"{p.id:24} {p.api}"))
