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

import sys

import numpy as np

from peer_serve import Threads, as_codes, available as available_of, hello_reply, load_checked, main as peer_main, ml_dtypes, serve as \
    serve_requests, timed, torch

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
        return lambda: (np.copyto(o, d.x, casting="unsafe"), o)[1]  # the codes, for output
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
            return lambda: (np.copyto(o, d.x, casting="unsafe"), o)[1]  # the codes, for output
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
        return hello_reply(peers, skipped, KNOWN)

    def load(req):
        x = load_checked(req["path"], req["sum"], req["xor"], (np.float32,))
        data[req["name"]] = Data(x)
        return {"ok": True, "n": int(len(x))}

    def output(req):
        p = peers[req["peer"]]
        np.save(req["path"], as_codes(fn(req["data"], p.id)(), p.out_dtype))
        return {"ok": True}

    def time_(req):
        p = peers[req["peer"]]
        threads.use(p, req["threads"])
        return timed(fn(req["data"], p.id), req["min_s"])

    def forget(req):
        data.pop(req["name"], None)
        for k in [k for k in fns if k[0] == req["name"]]:
            del fns[k]
        return {"ok": True}

    serve_requests({"hello": hello, "load": load, "output": output, "time": time_, "forget": forget})


if __name__ == "__main__":
    sys.exit(peer_main(__doc__, serve, available, lambda p: f"{p.id:24} {p.format:5} {p.api}"))
