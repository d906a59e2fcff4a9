#!/usr/bin/env python3
"""Peer conversions (numpy, torch, ml_dtypes) for fpscope-bench-convert.

The benchmark starts this script once as a subprocess and talks to it in JSON lines on
stdin/stdout, one request and one reply per line, so that it can interleave the peers'
repetitions with its own: both then see the same machine state. The input arrays come from
the benchmark as .npy files and are checked against the checksum it computed.

Requests ({"cmd": ...}):
  hello                                   -> versions, peers available, peers skipped (with why)
  load   name path sum xor                -> loads an .npy float32 array, checks its checksum
  output data peer path                   -> runs the peer once, saves its codes as uint .npy
  time   data peer threads min_s          -> seconds per call: calls repeated for >= min_s
  quit

Run by hand: `peers.py --list` prints what is available here.
"""

import gc
import json
import sys
import time

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


class Peer:
    """One conversion of float32 to a format by one library and one API."""

    def __init__(self, pid, fmt, lib, api, make, out_dtype, threaded=False):
        self.id, self.format, self.lib, self.api = pid, fmt, lib, api
        self.make = make          # make(data) -> zero-argument callable doing one conversion
        self.out_dtype = out_dtype
        self.threaded = threaded  # obeys torch.set_num_threads


class Data:
    def __init__(self, x):
        self.x = x
        self.t = torch.from_numpy(x) if torch is not None else None  # shares the memory
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
    yield Peer("numpy.fp16.astype", "fp16", "numpy", "x.astype(np.float16)",
               lambda d: (lambda: d.x.astype(np.float16)), np.uint16)

    def copyto(d):
        o = d.out("np.f2", lambda: np.empty(len(d.x), np.float16))
        return lambda: np.copyto(o, d.x, casting="unsafe")
    yield Peer("numpy.fp16.copyto", "fp16", "numpy", "np.copyto(o16, x, casting='unsafe')",
               copyto, np.uint16)


def torch_peers():
    for fmt, dt, name in (("fp16", torch.float16, "half"), ("bf16", torch.bfloat16, "bfloat16")):
        yield Peer(f"torch.{fmt}.{name}", fmt, "torch", f"t.{name}()",
                   (lambda name_: lambda d: getattr(d.t, name_))(name), np.uint16, threaded=True)

        def copy(d, dt_=dt, fmt_=fmt):
            o = d.out("torch." + fmt_, lambda: torch.empty(len(d.x), dtype=dt_))
            return lambda: o.copy_(d.t)
        yield Peer(f"torch.{fmt}.copy_", fmt, "torch", f"o.copy_(t)  # o: torch.{str(dt).split('.')[-1]}",
                   copy, np.uint16, threaded=True)


def ml_dtypes_peers():
    for fmt, name, u in (("bf16", "bfloat16", np.uint16), ("e4m3", "float8_e4m3fn", np.uint8),
                         ("e5m2", "float8_e5m2", np.uint8)):
        dt = getattr(ml_dtypes, name)
        yield Peer(f"ml_dtypes.{fmt}.astype", fmt, "ml_dtypes", f"x.astype(ml_dtypes.{name})",
                   (lambda dt_: lambda d: (lambda: d.x.astype(dt_)))(dt), u)

        def copyto(d, dt_=dt, name_=name):
            o = d.out("ml." + name_, lambda: np.empty(len(d.x), dt_))
            return lambda: np.copyto(o, d.x, casting="unsafe")
        yield Peer(f"ml_dtypes.{fmt}.copyto", fmt, "ml_dtypes",
                   f"np.copyto(o, x, casting='unsafe')  # o: ml_dtypes.{name}", copyto, u)


# Every peer the benchmark knows, available or not: a missing one is reported, never dropped.
KNOWN = [
    ("numpy.fp16.astype", "fp16", "numpy"), ("numpy.fp16.copyto", "fp16", "numpy"),
    ("torch.fp16.half", "fp16", "torch"), ("torch.fp16.copy_", "fp16", "torch"),
    ("torch.bf16.bfloat16", "bf16", "torch"), ("torch.bf16.copy_", "bf16", "torch"),
    ("ml_dtypes.bf16.astype", "bf16", "ml_dtypes"), ("ml_dtypes.bf16.copyto", "bf16", "ml_dtypes"),
    ("ml_dtypes.e4m3.astype", "e4m3", "ml_dtypes"), ("ml_dtypes.e4m3.copyto", "e4m3", "ml_dtypes"),
    ("ml_dtypes.e5m2.astype", "e5m2", "ml_dtypes"), ("ml_dtypes.e5m2.copyto", "e5m2", "ml_dtypes"),
]


def available():
    peers, skipped = {}, {}
    groups = [("numpy", numpy_peers, None),
              ("torch", torch_peers if torch is not None else None,
               None if torch is not None else torch_error),
              ("ml_dtypes", ml_dtypes_peers if ml_dtypes is not None else None,
               None if ml_dtypes is not None else ml_dtypes_error)]
    for lib, gen, err in groups:
        if gen is None:
            for pid, _, plib in KNOWN:
                if plib == lib:
                    skipped[pid] = f"{lib} not importable ({err})"
            continue
        for p in gen():
            peers[p.id] = p
    for pid, _, _ in KNOWN:
        if pid not in peers and pid not in skipped:
            skipped[pid] = "not provided by the installed version"
    return peers, skipped


def checksum(x):
    w = x.view(np.uint32)
    return int(w.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(w)) if len(w) else 0


def as_codes(r, u):
    if torch is not None and isinstance(r, torch.Tensor):
        r = r.view(torch.int16 if u == np.uint16 else torch.uint8).numpy()
    return np.ascontiguousarray(r).view(u)


def versions():
    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    v["torch"] = torch.__version__ if torch is not None else None
    v["ml_dtypes"] = getattr(ml_dtypes, "__version__", "?") if ml_dtypes is not None else None
    if torch is not None:
        cpu = getattr(torch.backends, "cpu", None)  # torch >= 2.0
        v["torch_threads_default"] = torch.get_num_threads()
        v["torch_cpu_capability"] = cpu.get_cpu_capability() if cpu is not None else None
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
                       "peers": [{"id": p.id, "format": p.format, "lib": p.lib, "api": p.api,
                                  "threaded": p.threaded} for p in peers.values()],
                       "skipped": [{"id": pid, "format": f, "lib": lib, "why": skipped[pid]}
                                   for pid, f, lib in KNOWN if pid in skipped]}
            elif cmd == "load":
                x = np.load(req["path"])
                if x.dtype != np.float32 or x.ndim != 1:
                    raise ValueError(f"{req['path']}: expected 1-d float32, got {x.dtype} {x.shape}")
                s, xr = checksum(x)
                if (s, xr) != (req["sum"], req["xor"]):
                    raise ValueError(f"{req['path']}: checksum {s:#x}/{xr:#x} differs from the "
                                     f"benchmark's {req['sum']:#x}/{req['xor']:#x}")
                data[req["name"]] = Data(x)
                rep = {"ok": True, "n": int(len(x))}
            elif cmd == "output":
                p = peers[req["peer"]]
                np.save(req["path"], as_codes(fn(req["data"], p.id)(), p.out_dtype))
                rep = {"ok": True}
            elif cmd == "time":
                p = peers[req["peer"]]
                if p.threaded and req["threads"] != threads:
                    threads = req["threads"]
                    torch.set_num_threads(threads)
                f = fn(req["data"], p.id)
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
            print(f"{p.id:24} {p.format:5} {p.api}")
        for pid, why in skipped.items():
            print(f"{pid:24} SKIPPED: {why}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
