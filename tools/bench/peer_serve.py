"""What the benchmark peer scripts (peers.py, hist_peers.py, arith_peers.py) share.

Each benchmark starts its peer script once as a subprocess (tools/bench/peer_process.hpp) and
talks to it in JSON lines on stdin/stdout, one request and one reply per line, so that it can
interleave the peers' repetitions with its own. Here: the optional imports of torch and
ml_dtypes, the registry of known peers, a result's raw codes (a missing one is reported with why, never dropped),
the request loop with its error replies, the checksummed .npy load, the timing loop and
`--list`. Each script supplies its peers and the handlers of its own requests.
"""

import gc
import json
import sys
import time

import numpy as np


def optional(name):
    """(module, None) or (None, why it does not import): any failure means the peer is missing."""
    try:
        return __import__(name), None
    except Exception as e:  # noqa: BLE001
        return None, f"{type(e).__name__}: {e}"


torch, torch_error = optional("torch")
ml_dtypes, ml_dtypes_error = optional("ml_dtypes")


def available(known, numpy_peers, torch_peers, ml_dtypes_peers):
    """Peers by id, and the known ids that are not available with the reason. `known` lists
    tuples (id, ..., lib); the *_peers generate the peers of one library each."""
    peers, skipped = {}, {}
    groups = [("numpy", numpy_peers, None),
              ("torch", torch_peers if torch is not None else None, torch_error),
              ("ml_dtypes", ml_dtypes_peers if ml_dtypes is not None else None, ml_dtypes_error)]
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


def hello_reply(peers, skipped, known, fields=("format",)):
    """The reply to "hello": versions, the available peers and the skipped ones with why.
    `known` tuples are (id, *fields, lib)."""
    return {"versions": versions(),
            "peers": [{"id": p.id, **{f: getattr(p, f) for f in fields}, "lib": p.lib, "api": p.api,
                       "threaded": p.threaded} for p in peers.values()],
            "skipped": [{"id": k[0], **dict(zip(fields, k[1:-1])), "lib": k[-1], "why": skipped[k[0]]}
                        for k in known if k[0] in skipped]}


def as_codes(r, u):
    """A peer's result, a NumPy array or a torch tensor, as the raw codes of unsigned dtype u
    (uint16 or uint8): what the benchmark compares with its own output bit for bit."""
    if torch is not None and isinstance(r, torch.Tensor):
        r = r.view(torch.int16 if u == np.uint16 else torch.uint8).numpy()
    return np.ascontiguousarray(r).view(u)


def checksum(x, word=np.uint32):
    """(sum, xor) of the array's words (its own elements for word None), as the benchmark
    computes them."""
    w = x if word is None else x.view(word)
    return int(w.sum(dtype=np.uint64)), int(np.bitwise_xor.reduce(w)) if len(w) else 0


def load_checked(path, sum_want, xor_want, dtypes, word=np.uint32):
    """A 1-d .npy array of one of `dtypes`, whose checksum must be the benchmark's."""
    x = np.load(path)
    if x.dtype not in dtypes or x.ndim != 1:
        raise ValueError(f"{path}: expected 1-d {'/'.join(np.dtype(d).name for d in dtypes)}, got {x.dtype} {x.shape}")
    s, xr = checksum(x, word)
    if (s, xr) != (sum_want, xor_want):
        raise ValueError(f"{path}: checksum {s:#x}/{xr:#x} differs from the benchmark's {sum_want:#x}/{xor_want:#x}")
    return x


class Threads:
    """torch.set_num_threads, called only when a threaded peer asks for a different count."""

    def __init__(self):
        self.n = None

    def use(self, peer, n):
        if peer.threaded and n != self.n:
            self.n = n
            torch.set_num_threads(n)


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


def serve(handlers):
    """The request loop: each request {"cmd": name, ...} goes to handlers[name](req), whose
    dict is the reply; an exception becomes {"error": ...} (the benchmark prints n/a); "quit"
    ends the loop."""
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


def main(doc, serve_fn, peers_and_skipped, describe):
    """--serve: the request loop; --list: what is available here (describe(peer) per line)."""
    if "--serve" in sys.argv:
        serve_fn()
    elif "--list" in sys.argv:
        peers, skipped = peers_and_skipped()
        print(json.dumps(versions()))
        for p in peers.values():
            print(describe(p))
        for pid, why in skipped.items():
            print(f"{pid:24} SKIPPED: {why}")
    else:
        print(doc)
        return 2
    return 0
