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
import json
import sys
import time
import warnings

import numpy as np

try:
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means the peer is missing
    torch = None
    torch_error = f"{type(e).__name__}: {e}"
try:
    import ml_dtypes
except Exception as e:  # noqa: BLE001
    ml_dtypes = None
    ml_dtypes_error = f"{type(e).__name__}: {e}"

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
    peers, skipped = {}, {}
    groups = [("numpy", numpy_peers, None),
              ("torch", torch_peers if torch is not None else None,
               None if torch is not None else torch_error),
              ("ml_dtypes", ml_dtypes_peers if ml_dtypes is not None else None,
               None if ml_dtypes is not None else ml_dtypes_error)]
    for lib, gen, err in groups:
        if gen is None:
            for pid, _, _, plib in KNOWN:
                if plib == lib:
                    skipped[pid] = f"{lib} not importable ({err})"
            continue
        for p in gen():
            peers[p.id] = p
    for pid, _, _, _ in KNOWN:
        if pid not in peers and pid not in skipped:
            skipped[pid] = "not provided by the installed version"
    return peers, skipped


def checksum(x):
    return int(x.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(x)) if len(x) else 0


def as_codes(r, u):
    if torch is not None and isinstance(r, torch.Tensor):
        r = r.view(torch.int16).numpy()
    return np.ascontiguousarray(r).view(u)


def versions():
    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    v["torch"] = torch.__version__ if torch is not None else None
    v["ml_dtypes"] = getattr(ml_dtypes, "__version__", "?") if ml_dtypes is not None else None
    if torch is not None:
        v["torch_threads_default"] = torch.get_num_threads()
    return v


def serve():
    peers, skipped = available()
    data, fns = {}, {}
    threads = None

    def fn(dname, pid):
        if (dname, pid) not in fns:
            fns[(dname, pid)] = peers[pid].make(data[dname])
        return fns[(dname, pid)]

    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "hello":
                rep = {"versions": versions(),
                       "peers": [{"id": p.id, "format": p.format, "op": p.op, "lib": p.lib, "api": p.api,
                                  "threaded": p.threaded} for p in peers.values()],
                       "skipped": [{"id": pid, "format": f, "op": o, "lib": lib, "why": skipped[pid]}
                                   for pid, f, o, lib in KNOWN if pid in skipped]}
            elif cmd == "load":
                codes = []
                for path, s_want, x_want in zip(req["paths"], req["sums"], req["xors"]):
                    x = np.load(path)
                    if x.dtype not in (np.uint16, np.uint8) or x.ndim != 1:
                        raise ValueError(f"{path}: expected 1-d uint16 or uint8, got {x.dtype} {x.shape}")
                    s, xr = checksum(x)
                    if (s, xr) != (s_want, x_want):
                        raise ValueError(f"{path}: checksum {s:#x}/{xr:#x} differs from the "
                                         f"benchmark's {s_want:#x}/{x_want:#x}")
                    codes.append(x)
                data[req["name"]] = Data(codes)
                rep = {"ok": True, "n": int(len(codes[0]))}
            elif cmd == "output":
                f, o = fn(req["data"], req["peer"])
                f()
                np.save(req["path"], as_codes(o, data[req["data"]].codes[0].dtype))
                rep = {"ok": True}
            elif cmd == "time":
                p = peers[req["peer"]]
                if p.threaded and req["threads"] != threads:
                    threads = req["threads"]
                    torch.set_num_threads(threads)
                f, _ = fn(req["data"], p.id)
                warm_s = req.get("warm_s", 0)
                if warm_s > 0:  # untimed calls first: wake torch's OpenMP workers
                    t0 = time.perf_counter()
                    while True:
                        f()
                        if time.perf_counter() - t0 >= warm_s:
                            break
                min_s = req["min_s"]
                calls = 0
                gc.disable()
                t0 = time.perf_counter()
                while True:
                    f()
                    calls += 1
                    el = time.perf_counter() - t0
                    if el >= min_s:
                        break
                gc.enable()
                rep = {"s": el / calls, "calls": calls}
            elif cmd == "forget":
                data.pop(req["name"], None)
                for k in [k for k in fns if k[0] == req["name"]]:
                    del fns[k]
                gc.collect()
                rep = {"ok": True}
            elif cmd == "quit":
                break
            else:
                raise ValueError(f"unknown request {cmd!r}")
        except Exception as e:  # noqa: BLE001 - reported to the benchmark, which prints n/a
            rep = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(rep) + "\n")
        sys.stdout.flush()


def main():
    if "--serve" in sys.argv:
        serve()
    elif "--list" in sys.argv:
        peers, skipped = available()
        print(json.dumps(versions()))
        for p in peers.values():
            print(f"{p.id:20} {p.api}")
        for pid, why in skipped.items():
            print(f"{pid:20} SKIPPED: {why}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
