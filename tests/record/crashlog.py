"""Every crash point of a recording, exactly: run the recorder with writelog.c preloaded (it logs
each write to the trace file, in order), then rebuild the file as it stands after each write and
check it, each check in a forked process (HDF5 can crash on a damaged file).
"""

import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import h5py

import tracecheck

HERE = Path(__file__).resolve().parent


def build_shim(dest):
    """Compiles writelog.c into dest/writelog.so; None if there is no C compiler."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    out = Path(dest) / "writelog.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(HERE / "writelog.c"), "-ldl"], check=True)
    return out


def run_logged(shim, args, target, log, timeout=120):
    """Runs python args with every write to target logged into log; returns the CompletedProcess."""
    env = dict(os.environ, LD_PRELOAD=str(shim), FPSCOPE_WRITELOG=str(log), FPSCOPE_WRITELOG_TARGET=str(target))
    return subprocess.run([sys.executable, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=True)


def records(log):
    """(type, a, data-or-b) records of a write log."""
    d = Path(log).read_bytes()
    i = 0
    while i < len(d):
        t, a, b = struct.unpack_from("<cQQ", d, i)
        i += 17
        if t == b"W":
            yield t, a, d[i : i + b]
            i += b
        else:
            yield t, a, b


PAGE = 4096


def crash_points(log, torn=False):
    """(index, file bytes, file length, steps marked complete, description) after each write or
    truncation (the length can exceed the bytes: a sparse tail of zeros). torn: also after each
    page of a write that spans pages and rewrites bytes written before (SIGKILL can interrupt a
    write between pages; cut writes into space never written before are harmless: nothing on
    disk refers to it yet)."""
    image, size, written, marks, k = bytearray(), 0, 0, set(), 0
    for t, a, x in records(log):
        if t == b"M":
            marks.add(a)
            continue
        if t == b"W":
            end = a + len(x)
            if len(image) < end:
                image.extend(bytes(end - len(image)))
            if torn and a < written:  # a kill during a write stops it at a page boundary (Linux generic_perform_write)
                for cut in range((a // PAGE + 1) * PAGE, end, PAGE):
                    old = image[cut:end]
                    image[a:cut] = x[: cut - a]
                    yield k, image, max(size, cut), frozenset(marks), f"write {len(x)} bytes at {a} torn at {cut}"
                    k += 1
                    image[cut:end] = old
            image[a:end] = x
            size, written = max(size, end), max(written, end)
            desc = f"write {len(x)} bytes at {a}"
        elif t == b"T":
            del image[a:]
            size = a
            desc = f"truncate to {a}"
        else:
            continue
        yield k, image, size, frozenset(marks), desc
        k += 1


def check_image(image, size, marks, reference, path, extra=1):
    """'ok' or what is wrong with the trace whose bytes are image: it must open, list every step
    in marks (the recorder had said they were on disk) and at most `extra` more, and each listed
    step must equal the reference's (tracecheck.digest of the clean run) bit for bit."""
    with open(path, "wb") as f:
        f.write(image[:size])
        f.truncate(size)
    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001
        return f"does not open: {e}"
    try:
        got = tracecheck.digest(f)
        steps = {int(s) for s in got}
        if not marks <= steps:
            return f"steps {sorted(marks - steps)} were complete but are missing"
        if len(steps - marks) > extra:
            return f"unexpected steps {sorted(steps - marks)}"
        for s in got:
            if got[s] != reference[s]:
                return f"step {s} differs from the clean run"
        return "ok"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    finally:
        f.close()


def check_all(log, reference, tmp, torn=False, stop=None, check=None, timeout=20):
    """Checks every crash point (forked); returns [(index, description, marks, problem)].
    stop: return once that many problems after the first mark are found. check: the check of
    one point (default check_image; same arguments, 'ok' or the problem). timeout: seconds a
    check may take (HDF5 can loop forever on a damaged file)."""
    problems = []
    path = Path(tmp) / "crash.h5"
    check = check or check_image
    for k, image, size, marks, desc in crash_points(log, torn):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (child)
            os.close(r)
            signal.alarm(timeout)
            try:
                res = check(image, size, marks, reference, path)
            except BaseException as e:  # noqa: BLE001
                res = f"checker failed: {e!r}"
            os.write(w, res.encode()[:60000])
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        res = b"".join(chunks).decode()
        if not res:
            hung = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM
            res = f"the reader hung (killed after {timeout} s)" if hung else f"the reader crashed (wait status {status})"
        if res != "ok":
            problems.append((k, desc, sorted(marks), res))
            if stop is not None and sum(1 for p in problems if p[2]) >= stop:
                break
    return problems
