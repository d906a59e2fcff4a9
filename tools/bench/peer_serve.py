#!/usr/bin/env python3
"""The peers' server of every benchmark under tools/bench: numpy, torch and ml_dtypes doing what
fpscope does, timed between fpscope's own samples.

    peer_serve.py PEERS.py --serve    the request loop (how the benchmarks start it)
    peer_serve.py PEERS.py --list     what is available here, by hand

PEERS.py is a benchmark's peers (peers.py: fpscope-bench-convert, hist_peers.py: -hist,
arith_peers.py: -arith) and holds only them:
  KNOWN                  every peer the benchmark knows, as (id, *FIELDS, lib): a missing one is
                         reported with why, never dropped
  FIELDS                 the fields of KNOWN between id and lib (default ("format",))
  DTYPES                 the dtypes a loaded array may have (default (np.float32,))
  Data(arrays)           a loaded data set, made from its checked arrays
  numpy_peers(), torch_peers(), ml_dtypes_peers()
                         the Peer objects of each library (called only when it imports)

A benchmark (tools/bench/harness.cpp) starts this once as a subprocess and talks to it in JSON
lines on stdin/stdout, one request and one reply per line, so that it can interleave the peers'
repetitions with its own: both then see the same machine state. Requests ({"cmd": ...}):
  hello                                -> versions, peers available, peers skipped (with why)
  load   name paths sums xors          -> loads a data set: .npy arrays, each checked against
                                          the benchmark's checksum (sum, xor of its words)
  output data peer path                -> runs the peer once, saves its result as raw codes (.npy)
  time   data peer threads min_s [warm_s]
                                       -> seconds per call: calls repeated for >= min_s (after
                                          untimed calls for warm_s: they wake torch's workers)
  call   data peer threads args        -> one call f(*args), timed: {"s": seconds, "result": ...}
  forget name
  quit
An exception becomes {"error": ...}: the benchmark prints n/a with it.
"""

import gc
import importlib.util
import json
import os
import sys
import time

import numpy as np

if __name__ == "__main__":
    # The peers modules import this one by name: let them find this copy, not load a second.
    sys.modules.setdefault("peer_serve", sys.modules[__name__])


def optional(name):
    """(module, None) or (None, why it does not import): any failure means the peer is missing."""
    try:
        return __import__(name), None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


torch, torch_error = optional("torch")
ml_dtypes, ml_dtypes_error = optional("ml_dtypes")


class Peer:
    """One way of doing the benchmark's work by one library and one API. make(data) returns the
    callable a request runs (cached per data set); codes: the unsigned dtype of its result's raw
    codes, for "output"; fields: the KNOWN fields (format, op)."""

    def __init__(self, pid, lib, api, make, threaded=False, codes=None, **fields):
        self.id, self.lib, self.api, self.make = pid, lib, api, make
        self.threaded = threaded  # obeys torch.set_num_threads
        self.codes = codes
        self.fields = fields
        for k, v in fields.items():
            setattr(self, k, v)


def available(peers_module):
    """Peers by id, and the known ids that are not available with the reason."""
    known = peers_module.KNOWN
    peers, skipped = {}, {}
    groups = [("numpy", peers_module.numpy_peers, None),
              ("torch", peers_module.torch_peers if torch is not None else None, torch_error),
              ("ml_dtypes", peers_module.ml_dtypes_peers if ml_dtypes is not None else None, ml_dtypes_error)]
    for lib, gen, err in groups:
        if gen is None:
            for k in known:
                if k[-1] == lib:
                    skipped[k[0]] = f"{lib} not importable ({err})"
            continue
        for p in gen():
            peers[p.id] = p
    for k in known:
        if k[0] not in peers and k[0] not in skipped:
            skipped[k[0]] = "not provided by the installed version"
    return peers, skipped


def versions():
    v = {"python": sys.version.split()[0], "numpy": np.__version__}
    v["torch"] = torch.__version__ if torch is not None else None
    v["ml_dtypes"] = getattr(ml_dtypes, "__version__", "?") if ml_dtypes is not None else None
    if torch is not None:
        cpu = getattr(torch.backends, "cpu", None)  # torch >= 2.0
        v["torch_threads_default"] = torch.get_num_threads()
        v["torch_cpu_capability"] = cpu.get_cpu_capability() if cpu is not None else None
    return v


def as_codes(r, u):
    """A peer's result, a NumPy array or a torch tensor, as the raw codes of unsigned dtype u
    (uint16 or uint8): what the benchmark compares with its own output bit for bit."""
    if torch is not None and isinstance(r, torch.Tensor):
        r = r.view(torch.int16 if u == np.uint16 else torch.uint8).numpy()
    return np.ascontiguousarray(r).view(u)


def checksum(x):
    """(sum, xor) of the array's words (unsigned, of its own element size), as the benchmark
    computes them."""
    w = x.view(f"u{x.dtype.itemsize}")
    return int(w.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(w)) if len(w) else 0


def load_checked(path, sum_want, xor_want, dtypes):
    """A 1-d .npy array of one of `dtypes`, whose checksum must be the benchmark's."""
    x = np.load(path)
    if x.dtype not in dtypes or x.ndim != 1:
        raise ValueError(f"{path}: expected 1-d {'/'.join(np.dtype(d).name for d in dtypes)}, got {x.dtype} {x.shape}")
    s, xr = checksum(x)
    if (s, xr) != (sum_want, xor_want):
        raise ValueError(f"{path}: checksum {s:#x}/{xr:#x} differs from the benchmark's {sum_want:#x}/{xor_want:#x}")
    return x


def timed(f, min_s, warm_s=0.0):
    """Seconds per call of f, calls repeated for at least min_s (after untimed calls for warm_s:
    they wake torch's OpenMP workers), with the garbage collector off while timing."""
    if warm_s > 0:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < warm_s:
            f()
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
    return {"s": el / calls, "calls": calls}


class Server:
    """The state behind the requests: the peers, the loaded data sets, their peers' callables."""

    def __init__(self, peers_module):
        self.m = peers_module
        self.fields = tuple(getattr(peers_module, "FIELDS", ("format",)))
        self.peers, self.skipped = available(peers_module)
        self.data, self.fns = {}, {}
        self.threads = None  # what torch.set_num_threads was last given

    def fn(self, req):
        """The peer's callable on the data set, with torch's thread count set for it."""
        p = self.peers[req["peer"]]
        if "threads" in req and p.threaded and req["threads"] != self.threads:
            self.threads = req["threads"]
            torch.set_num_threads(self.threads)
        key = (req["data"], p.id)
        if key not in self.fns:
            self.fns[key] = p.make(self.data[req["data"]])
        return p, self.fns[key]

    def hello(self, _):
        return {"versions": versions(),
                "peers": [{"id": p.id, **p.fields, "lib": p.lib, "api": p.api, "threaded": p.threaded}
                          for p in self.peers.values()],
                "skipped": [{"id": k[0], **dict(zip(self.fields, k[1:-1])), "lib": k[-1], "why": self.skipped[k[0]]}
                            for k in self.m.KNOWN if k[0] in self.skipped]}

    def load(self, req):
        dtypes = getattr(self.m, "DTYPES", (np.float32,))
        arrays = [load_checked(path, s, x, dtypes) for path, s, x in zip(req["paths"], req["sums"], req["xors"])]
        self.data[req["name"]] = self.m.Data(arrays)
        return {"ok": True, "n": int(len(arrays[0]))}

    def output(self, req):
        p, f = self.fn(req)
        np.save(req["path"], as_codes(f(), p.codes))
        return {"ok": True}

    def time(self, req):
        _, f = self.fn(req)
        return timed(f, req["min_s"], req.get("warm_s", 0))

    def call(self, req):
        _, f = self.fn(req)
        gc.disable()
        t0 = time.perf_counter()
        r = f(*req["args"])
        el = time.perf_counter() - t0
        gc.enable()
        return {"s": el, "result": r}

    def forget(self, req):
        self.data.pop(req["name"], None)
        for k in [k for k in self.fns if k[0] == req["name"]]:
            del self.fns[k]
        gc.collect()
        return {"ok": True}

    def serve(self):
        """Each request {"cmd": name, ...} goes to the method of that name, whose dict is the
        reply; an exception becomes {"error": ...}; "quit" ends the loop."""
        handlers = {"hello": self.hello, "load": self.load, "output": self.output, "time": self.time,
                    "call": self.call, "forget": self.forget}
        for line in sys.stdin:
            req = json.loads(line)
            cmd = req["cmd"]
            if cmd == "quit":
                break
            try:
                if cmd not in handlers:
                    raise ValueError(f"unknown request {cmd!r}")
                rep = handlers[cmd](req)
            except Exception as e:  # noqa: BLE001 - reported to the benchmark, which prints n/a
                rep = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(rep) + "\n")
            sys.stdout.flush()


def load_peers(path):
    """The peers module at path (its directory importable, for this module)."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv):
    if len(argv) != 2 or argv[1] not in ("--serve", "--list"):
        print(__doc__)
        return 2
    peers_module = load_peers(argv[0])
    if argv[1] == "--serve":
        Server(peers_module).serve()
        return 0
    peers, skipped = available(peers_module)
    print(json.dumps(versions()))
    for p in peers.values():
        print(f"{p.id:24} {' '.join(f'{v:5}' for v in p.fields.values())} {p.api}")
    for pid, why in skipped.items():
        print(f"{pid:24} SKIPPED: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
