"""fpscope.record: records the gradients of a PyTorch training loop into an fpscope trace.

A trace is an HDF5 file in the format of docs/trace.md (version 1.2): one group per recorded
step, holding every tensor's attributes (dtype, shape, count, amax, zeros, infs, nans) and its
raw values, its exact bucket histogram (docs/hist.md, "The bucket histogram"), or both.
`fpscope replay` and any HDF5 tool (h5py, h5dump) read it.

Usage (call record() after loss.backward(), before the optimizer changes anything):

    from fpscope.record import Recorder     # pip install .; or, in a checkout,
    # import sys; sys.path.insert(0, "tools/record"); from fpscope_record import Recorder

    with Recorder("run.h5", "MLP 64-128-64-10 on sklearn digits, Adam lr 1e-3, seed 0",
                  every=2, mode="both") as rec:
        for step in range(steps):
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            rec.record(step, model.named_parameters(), loss=loss.item(),
                       lr=opt.param_groups[0]["lr"])
            opt.step()
    # leaving the block (close()) waits for the last steps to be written

Behaviour:

- Which steps: record(step, tensors, ...) records a step when step % every == 0, or when its
  loss_scale differs from the previous call's (on_scale_change), or when a gradient holds an
  inf or NaN (on_nonfinite; the check runs only on steps not already chosen, one pass over the
  gradients, or pass nonfinite=True/False when you know, e.g. from GradScaler). It returns
  whether it recorded. `tensors` is model.named_parameters() (each parameter's .grad is
  recorded; parameters whose .grad is None are skipped) or a mapping / iterable of (name,
  tensor) pairs holding the gradients themselves (torch tensors on any device, or numpy
  arrays: float32, float16, and ml_dtypes' bfloat16 / float8_e4m3fn / float8_e5m2).
- Gradients are stored as given: pass unscaled gradients (with a GradScaler, call
  scaler.unscale_(optimizer) first) and the scale in loss_scale=.
- dtype="float32" | "float16" | "bfloat16" converts every tensor to that type (round to
  nearest even, by torch on the tensor's device) before recording; dtype=None keeps each
  tensor's own type.
- block_stats=True also stores each tensor's compact per-block statistics (`bstats_*`
  datasets, docs/trace.md "Block statistics"; computed by the C++ module in the writer thread,
  the tensor seen as (count / last dimension) x (last dimension)): block recipes answer from
  them without raw values (fpscope.answer_block_stats, Trace.block_stats, `fpscope recipes`).
  block_stats="operands": only the GEMM operands watch() captures; record(..., block_stats=...)
  overrides it for one step (they cost a few tens of KB per operand, compressed, whatever its
  size: a run records them on some steps).
- mode="raw" stores `values`, "hist" the histogram (`hist_keys`, `hist_counts`: at most a few
  thousand buckets per tensor), "both" both; record(..., mode=...) overrides it for one step.
  raw_budget=B (bytes): a step gets its raw values only while the raw values recorded so far
  (uncompressed) plus its own stay within B; past that its tensors get histograms only (a
  warning says so once).
- Off the critical path (background=True, the default): record() chooses the step, copies
  what it needs out of the gradients (once: the same copy serves the histogram and the raw
  values; for a CUDA tensor the histogram and amax are queued on the device and only the
  sparse histogram and, when raw values are asked for, the values, through pinned memory, come
  back), hands the step to one writer thread and returns. The writer computes histograms and
  statistics (the C++ library through the fpscope module, GIL released; NumPy where the module
  is not importable), compresses raw values (zlib, GIL released) and writes. At most
  max_pending steps (default 2) or max_pending_bytes of copies (default 1 GiB; one step is
  always accepted) wait for it; record() blocks while the queue is full (back-pressure).
  flush() returns when every step record() accepted is on disk; close() (and leaving the with
  block) flushes and closes. An error in the writer (disk full, ...) is raised, as
  RecorderError with the cause attached, by the next record(), flush() or close(); the steps
  after the failed one are not written. background=False writes in record(), as before.
- Histograms where the tensor is: backend=None picks torch integer ops + bincount on the
  tensor's device for torch tensors not on the CPU, the C++ library for CPU tensors and numpy
  arrays, and NumPy where the fpscope module is not importable; "torch", "module" or "numpy"
  force one. Every backend gives the same keys, counts and statistics bit for bit
  (tests/record/test_backends.py). threads: the C++ library's and the compressor's threads
  (default 1 with the background writer: a core of its own, not all of the training's; 0, all
  cores for large tensors, when background=False).
- Safe against being killed (docs/trace.md, "Writing safely"): a process killed at any moment
  leaves a file that opens and holds every step whose write completed, each whole, and at
  most one more (whole too). With the background writer, record()'s return means "queued":
  flush() (or close()) returns when they are on disk, and on_written(step), called from the
  writer thread as each step's write completes, says which are. This holds for up to
  max_steps steps (default 4096; the /steps group is allocated for them up front, about 40
  bytes each); past that, appending a step is no longer a single write (a warning says so).
  How: each step is built as an unlinked (anonymous) group and flushed, then linked into
  /steps, whose link storage is preallocated so that the link is one in-place write, and
  flushed again; object headers without checksums (file format bounds "earliest"), fixed-
  length strings, and the file kept longer than its end of allocation while flushing.
  tests/record/test_crash.py checks it after every write of a run; docs/trace.md says why.
- Distributed runs (docs/trace.md, "Multi-rank traces"): each rank records its own file, with
  no coordination between ranks. rank/world_size default to torch.distributed's when it is
  initialised (pass them to override, or for a run without torch.distributed); layout=
  {"dp": (rank, size), "tp": (...), "pp": (...)} records the process-group coordinates.
  shards={name: flat_shard(...) | split_shard(...)} (constructor, or record(shards=...) for
  one step) says which part of a logical tensor a gradient is: a ZeRO/FSDP flat shard
  (elements offset.. of the flattened tensor) or a tensor-parallel split (part `index` of
  `parts` along dimension `dim`). A gradient without one is the whole tensor (a DDP replica).
  `fpscope replay rank*.h5` replays the files as one run.
- GEMM operands (docs/trace.md, "GEMM operands"; format minor version 2): rec.watch(model,
  layers="blocks.*", every=N, mode=None) hooks the nn.Linear modules whose names match (fnmatch
  patterns): on steps with step % N == 0 each one's input X, weight W and output gradient dY
  are copied (once) during the forward and backward and recorded by the next record() as
  "<layer>:input", "<layer>:weight", "<layer>:grad" with @role, @layer and @gemm_shape; the
  watched weights' gradients are tagged role "wgrad". record(..., operand_mode=...) sets the
  operands' mode for one step (raw values on a few steps, histograms on the others). See
  Recorder.watch.
- h5py reads the string attributes (fixed-length UTF-8) as bytes: .decode() them.

Needs numpy and h5py (HDF5 >= 1.10.5 for the tunings reached through ctypes: the HDF5 library
h5py loaded); torch only for torch tensors; the fpscope module (lib/python) for the C++
histograms (optional).
"""

import collections
import contextlib
import datetime
import math
import numbers
import os
import sys
import threading
import warnings
import weakref
import zlib
from collections.abc import Mapping

import h5py
import numpy as np

FORMAT_VERSION = 1
FORMAT_MINOR = 2  # 1: rank layout in the root, shard descriptions on tensors (docs/trace.md, "Multi-rank traces");
#                  2: GEMM operands: @role, @layer, @gemm_shape on tensors (docs/trace.md, "GEMM operands")
PRODUCER_VERSION = 2  # 2: background writer, chunks compressed by the recorder (the format is unchanged)
DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")
MODES = ("raw", "hist", "both")
ROLES = ("input", "weight", "grad", "wgrad")  # docs/trace.md, "GEMM operands": X, W, dY of nn.Linear's GEMMs; dW
BACKENDS = ("module", "torch", "numpy")
CHUNK = 1 << 20  # elements per chunk of a values dataset (docs/trace.md: at most 2^20)
PAD = 4 << 20  # sparse bytes kept past the end of allocation while flushing (see _Writer._flush)
DEFLATE_LEVEL = 4  # docs/trace.md: shuffle + deflate level 4

__all__ = ["Recorder", "RecorderError", "ROLES", "flat_shard", "split_shard", "summarize", "bucket_keys", "histogram", "escape", "unescape",
           "tensor_stats", "DTYPES", "MODES", "BACKENDS"]


class RecorderError(RuntimeError):
    """The background writer failed (its exception is the __cause__); `step` is the step it was writing."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def escape(name):
    """A tensor name as an HDF5 link name: '%' -> '%25', '/' -> '%2F' (in that order)."""
    return name.replace("%", "%25").replace("/", "%2F")


def unescape(link):
    """The inverse of escape()."""
    return link.replace("%2F", "/").replace("%25", "%")


# ---- histograms and statistics: three backends, the same bits ------------------------------------

_U32 = np.uint32


def bucket_keys(x):
    """The bucket key (docs/hist.md) of every element of a float32 array, as uint32 (NumPy).

    t = bits << 9; L = leading ones of t (0..23); after = t << L << 1;
    key = (bits >> 16 & ~0x7F) | L << 2 | (after >> 30 & 2) | (after << 1 != 0).
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32)
    t = np.left_shift(bits, _U32(9))
    # Leading ones of t = 32 - bit length of ~t. ~t >= 511 (the low 9 bits of t are zero), so
    # its bit length is 9..32 and L is 0..23; frexp of the exact float64 gives the bit length.
    _, length = np.frexp(np.invert(t).astype(np.float64))
    run = (32 - length).astype(np.uint32)
    after = np.left_shift(np.left_shift(t, run), _U32(1))  # run <= 23: two shifts, each < 32
    key = np.bitwise_and(np.right_shift(bits, _U32(16)), _U32(0xFFFFFF80))
    key |= np.left_shift(run, _U32(2))
    key |= np.bitwise_and(np.right_shift(after, _U32(30)), _U32(2))
    key |= (np.left_shift(after, _U32(1)) != 0).astype(np.uint32)
    return key


def histogram(x):
    """The sparse bucket histogram of a float32 array: (sorted nonzero keys uint32, counts uint64) (NumPy)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    counts = np.zeros(1 << 16, dtype=np.uint64)
    for lo in range(0, flat.size, CHUNK):
        counts += np.bincount(bucket_keys(flat[lo : lo + CHUNK]), minlength=1 << 16).astype(np.uint64)
    keys = np.flatnonzero(counts).astype(np.uint32)
    return keys, counts[keys]


def tensor_stats(w):
    """count, amax (max |x| over the finite elements, 0 if none), zeros, infs, nans of a float32 array (NumPy)."""
    w = w.reshape(-1)
    finite = np.isfinite(w)
    amax = float(np.max(np.abs(w[finite]))) if finite.any() else 0.0
    return {"count": int(w.size), "amax": amax, "zeros": int(np.count_nonzero(w == 0)),
            "infs": int(np.count_nonzero(np.isinf(w))), "nans": int(np.count_nonzero(np.isnan(w)))}


_module_state = []  # [tensor_summary or None], filled on first use


def _module_summary():
    """The C++ library's tensor_summary (fpscope.summarize, through the compiled module), or None
    where the module cannot be imported (not built, not on the path, built without it)."""
    if not _module_state:
        try:
            from fpscope._fpscope import tensor_summary
        except Exception:  # noqa: BLE001  (ImportError, or a broken build: the NumPy path still works)
            tensor_summary = None
        _module_state.append(tensor_summary)
    return _module_state[0]


def _is_torch(x):
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _host_backend(backend):
    if backend == "module" or (backend is None and _module_summary() is not None):
        if _module_summary() is None:
            raise RuntimeError("backend 'module': the fpscope module (lib/python, tensor_summary) is not importable")
        return "module"
    return "numpy"


def summarize(x, backend=None, threads=0):
    """(keys, counts, stats) of float32 values: the sparse bucket histogram (sorted keys uint32,
    counts uint64; docs/hist.md) and the trace attributes {count, amax, zeros, infs, nans}
    (docs/trace.md), the same bit for bit from every backend:

    "module": the C++ library (fpscope.tensor_summary) on `threads` threads (0: all cores);
    "torch": torch integer ops and bincount on the tensor's device (x a torch tensor, or numpy);
    "numpy": NumPy. None: torch for a torch tensor not on the CPU, else the module where it is
    importable, else NumPy. x: a float32 numpy array or torch tensor.
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, not {backend!r}")
    if backend == "torch" or (backend is None and _is_torch(x) and x.device.type != "cpu"):
        import torch

        t = x if _is_torch(x) else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if t.dtype != torch.float32:
            raise TypeError(f"summarize counts float32 values, not {t.dtype}")
        return _torch_finish(*_torch_launch(t.detach().reshape(-1).view(torch.int32)))
    if _is_torch(x):
        x = x.detach().cpu().numpy()
    w = np.asarray(x)
    if w.dtype != np.float32:
        raise TypeError(f"summarize counts float32 values, not {w.dtype}")
    if _host_backend(backend) == "module":
        return _module_summary()(w, threads)
    keys, counts = histogram(w)
    return keys, counts, tensor_stats(w)


# The torch backend. Integer ops only (every device has them); bincount into a dense table of the
# 2^16 keys on the device; the statistics read off that table (zeros, infs, NaNs: their buckets
# hold nothing else) and one max. Slices bound the temporaries (a few int32 arrays of a slice).
_TORCH_SLICE = 1 << 22


def _torch_keys(bits):
    """The bucket keys (int32) of float32 bits (an int32 tensor), on its device.

    With f the 23-bit fraction and L its leading ones: ~f (23 bits) has bit length 23 - L, which
    its float32 conversion (exact below 2^24) gives in its exponent field; the zero that ends the
    run is bit 22 - L, the bits below it are `low`, their top bit the key's next bit."""
    frac = bits & 0x7FFFFF
    length = (((frac ^ 0x7FFFFF).float().view(bits.dtype) >> 23) - 126).clamp_(min=0)  # 0 when ~f == 0
    low = frac & ((1 << (length - 1).clamp_(min=0)) - 1)
    shift = (length - 2).clamp_(min=0)
    nxt = low >> shift  # 0 or 1 (low < 2^(length - 1)); 0 when nothing is below the zero
    below = (low - (nxt << shift)) != 0
    return ((bits >> 23) & 0x1FF) << 7 | (23 - length) << 2 | nxt << 1 | below.to(bits.dtype)


def _torch_launch(bits):
    """(dense counts int64[2^16], largest finite magnitude bits int32, count) of float32 bits
    on their device: queued there, nothing waits for it."""
    import torch

    table = torch.zeros(1 << 16, dtype=torch.int64, device=bits.device)
    top = torch.zeros((), dtype=torch.int32, device=bits.device)
    for lo in range(0, bits.numel(), _TORCH_SLICE):
        b = bits[lo : lo + _TORCH_SLICE]
        table += torch.bincount(_torch_keys(b), minlength=1 << 16)
        m = b & 0x7FFFFFFF
        top = torch.maximum(top, m.masked_fill_(m >= 0x7F800000, 0).max())
    return table, top, bits.numel()


def _torch_finish(table, top, count):
    """summarize()'s result from _torch_launch's: only the nonzero buckets leave the device."""
    import torch

    keys = torch.nonzero(table).reshape(-1)
    counts = table[keys]
    neg, inf = 1 << 15, 0x7F80  # the keys of +0 and -0 are 0 and neg; of +-inf, inf and neg + inf
    special = torch.stack([table[0] + table[neg], table[inf] + table[neg + inf],
                           table[inf : inf + 128].sum() + table[neg + inf :].sum()])
    zeros, infs, nans = special.cpu().tolist()
    stats = {"count": int(count), "amax": float(np.array(int(top), np.int32).view(np.float32)),
             "zeros": zeros, "infs": infs, "nans": nans - infs}
    return keys.cpu().numpy().astype(np.uint32), counts.cpu().numpy().astype(np.uint64), stats


def _torch_bits32(t, dtype):
    """The float32 bits (int32) of a stored tensor's values, widened exactly as widen() widens
    them: bfloat16 by a shift; float16 by torch except NaNs, whose payload widen() (NumPy) keeps
    as it is while torch quiets a signaling one."""
    import torch

    flat = t.reshape(-1)
    if dtype == "float32":
        return flat.view(torch.int32)
    h = flat.view(torch.int16).to(torch.int32) & 0xFFFF
    if dtype == "bfloat16":
        return h << 16
    nan = ((h & 0x7C00) == 0x7C00) & ((h & 0x3FF) != 0)
    return torch.where(nan, (h & 0x8000) << 16 | 0x7F800000 | (h & 0x3FF) << 13, flat.float().view(torch.int32))


def widen(dtype, raw):
    """The float32 values of raw stored elements (float32 as is; the others from their bits)."""
    if dtype == "float32":
        return raw
    if dtype == "float16":
        return raw.view(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return np.left_shift(raw.astype(np.uint32), _U32(16)).view(np.float32)
    import ml_dtypes  # fp8 only

    return raw.view(getattr(ml_dtypes, dtype)).astype(np.float32)


# ---- the tensors of a step, taken out of the training loop ---------------------------------------

_TORCH_DTYPES = ("float32", "float16", "bfloat16")


def _pairs(tensors, params=None):
    """[(name, tensor)] to record, in order: parameters give their .grad (none: skipped).
    params: a dict that receives name -> the Parameter whose .grad was taken."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    out = []
    for name, x in items:
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, not {type(name).__name__}")
        if isinstance(x, np.ndarray) or np.isscalar(x):
            out.append((name, np.asarray(x)))
            continue
        import torch

        if isinstance(x, torch.nn.Parameter):
            if x.grad is None:
                continue
            if params is not None:
                params[name] = x
            x = x.grad
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"tensor '{name}': cannot record a {type(x).__name__}")
        out.append((name, x))
    return out


def _stored_dtype(x, dtype):
    """The dtype a tensor is stored as (TypeError if it cannot be recorded)."""
    if _is_torch(x):
        kind = str(x.dtype).replace("torch.", "")
        if dtype is None and kind not in _TORCH_DTYPES:
            raise TypeError(f"cannot record a {x.dtype} tensor (pass dtype='float32' to convert it)")
        if dtype is not None and not x.is_floating_point():
            raise TypeError(f"cannot record a {x.dtype} tensor")
        return dtype or kind
    kind = x.dtype.name
    if dtype is not None and kind != dtype:
        if kind in ("float32", "float64", "float16") or kind in DTYPES:
            return dtype
        raise TypeError(f"cannot record a {kind} array")
    if kind not in DTYPES:
        raise TypeError(f"cannot record a {kind} array (pass dtype='float32' to convert it)")
    return kind


_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}


def _nonfinite(pairs):
    """Whether any of the tensors holds an inf or NaN. Torch: one float32 sum per tensor (an inf
    or NaN makes the sum non-finite; so can an overflow, then each tensor is checked exactly), one
    wait per device."""
    torch = sys.modules.get("torch")
    sums = {}
    for _, x in pairs:
        if _is_torch(x):
            if x.numel():
                sums.setdefault(x.device, []).append(x.detach().sum(dtype=torch.float32))
        elif x.size and not np.isfinite(x).all():
            return True
    for dev, s in sums.items():
        if not bool(torch.isfinite(torch.stack(s).sum())) and any(
                not bool(torch.isfinite(x).all()) for _, x in pairs if _is_torch(x) and x.device == dev):
            return True
    return False


class _Item:
    """One tensor of a step on its way to the file: its stored form, copied out of the training
    loop once (host), or its summary queued on its device (torch backend) with the raw values
    on their way through pinned memory."""

    __slots__ = ("name", "dtype", "shape", "raw", "launched", "event", "nbytes", "mode")

    def __init__(self, name, x, dtype, backend, raw_wanted):
        self.name, self.launched, self.event, self.raw, self.mode = name, None, None, None, None  # mode: None, the step's
        self.dtype = _stored_dtype(x, dtype)
        self.shape = tuple(int(n) for n in x.shape)
        if not _is_torch(x):
            self.raw = _from_numpy(x, dtype)
            self.nbytes = self.raw.nbytes
            return
        import torch

        x = x.detach()
        t = (x if dtype is None else x.to(getattr(torch, dtype))).reshape(-1)
        fresh = t.numel() == 0 or t.data_ptr() != x.data_ptr()  # a conversion or reshape copied it already
        if backend == "torch" or (backend is None and t.device.type != "cpu"):
            self.launched = _torch_launch(_torch_bits32(t, self.dtype))
            if raw_wanted:
                self.raw = _host_copy(t, fresh)
        else:
            self.raw = _host_copy(t, fresh)
        if t.device.type == "cuda":  # the writer waits for this before it reads any result
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(t.device))
        self.nbytes = 0 if self.raw is None else t.numel() * t.element_size()

    def resolve(self, backend, threads, raw_wanted, hist_wanted):
        """(raw numpy bits or None, keys, counts, stats); on the writer thread."""
        if self.event is not None:
            self.event.synchronize()
        raw = None if self.raw is None else _raw_bits(self.raw, self.dtype)
        host = _host_backend(None if backend == "torch" else backend)
        if self.launched is not None:
            keys, counts, stats = _torch_finish(*self.launched)
        elif host == "numpy" and not hist_wanted:
            keys, counts, stats = None, None, tensor_stats(widen(self.dtype, raw))  # NumPy's histogram is slow
        else:
            keys, counts, stats = summarize(widen(self.dtype, raw), host, threads)
        return (raw if raw_wanted else None), keys, counts, stats


def _host_copy(t, fresh):
    """A flat torch tensor's elements in host memory that the training loop cannot change once
    record() returns: from a CUDA device through pinned memory, asynchronously; on the CPU, t
    itself when it is already a copy (fresh), else a copy."""
    import torch

    if t.device.type == "cuda":
        out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        out.copy_(t, non_blocking=True)
        return out
    if t.device.type != "cpu":
        return t.cpu()
    return t if fresh else t.clone()


def _raw_bits(t, dtype):
    """Stored elements as numpy: float32, or the bits (uint16) of float16 / bfloat16."""
    if isinstance(t, np.ndarray):
        return t
    import torch

    if dtype == "float32":
        return t.numpy()
    return t.view(torch.int16).numpy().view(np.uint16)


def _from_numpy(a, dtype):
    """A copy of a numpy array's elements as stored (converted to dtype by torch, as a torch tensor
    would be): float32, or the raw bits of the other types."""
    kind = a.dtype.name
    if dtype is not None and kind != dtype:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(getattr(torch, dtype)).reshape(-1)
        return _raw_bits(t, dtype)
    flat = np.array(a, copy=True, order="C").reshape(-1)
    if kind == "float32":
        return flat
    return flat.view(np.uint16 if kind in ("float16", "bfloat16") else np.uint8)


def _producer():
    torch = sys.modules.get("torch")
    extra = f"torch {torch.__version__}, " if torch is not None else ""
    return f"fpscope_record {PRODUCER_VERSION} ({extra}h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version})"


def _number(v):
    if v is None:
        return math.nan
    if not isinstance(v, numbers.Real) and hasattr(v, "item"):
        v = v.item()
    return float(v)


# ---- multi-rank: where this process and its tensors sit in a distributed run -----------------------

_MAX_WORLD = 1 << 24  # the reader's bounds (lib/src/trace_reader.cpp)
_MAX_SPLIT = 1 << 20
_AXES = ("dp", "tp", "pp")


def _dims(shape, what):
    try:
        dims = tuple(int(n) for n in shape)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of integers, not {shape!r}") from None
    if len(dims) > 32 or any(n < 0 for n in dims):
        raise ValueError(f"{what} {dims} is not a shape")
    return dims


def flat_shard(logical_name, logical_shape, offset):
    """A flat shard (ZeRO, FSDP's flat parameters): the recorded gradient is elements
    [offset, offset + its numel) of `logical_name` (shape logical_shape) flattened in C order."""
    if not isinstance(logical_name, str) or not logical_name:
        raise ValueError(f"logical_name must be a non-empty string, not {logical_name!r}")
    if not isinstance(offset, numbers.Integral) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, not {offset!r}")
    return {"logical_name": logical_name, "logical_shape": _dims(logical_shape, "logical_shape"), "offset": int(offset)}


def split_shard(logical_name, logical_shape, dim, index, parts):
    """A tensor-parallel split: the recorded gradient is part `index` of `parts` equal parts of
    `logical_name` (shape logical_shape) along dimension `dim` (torch.chunk(parts, dim)[index];
    parts must divide that dimension)."""
    if not isinstance(logical_name, str) or not logical_name:
        raise ValueError(f"logical_name must be a non-empty string, not {logical_name!r}")
    shape = _dims(logical_shape, "logical_shape")
    for k, v in (("dim", dim), ("index", index), ("parts", parts)):
        if not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{k} must be an integer >= 0, not {v!r}")
    if dim >= len(shape):
        raise ValueError(f"dim {dim} is not a dimension of logical_shape {shape}")
    if not 1 <= parts <= _MAX_SPLIT or index >= parts:
        raise ValueError(f"index {index} of parts {parts}: need 0 <= index < parts <= {_MAX_SPLIT}")
    if shape[dim] % parts:
        raise ValueError(f"parts {parts} does not divide dimension {dim} ({shape[dim]}) of logical_shape {shape}")
    return {"logical_name": logical_name, "logical_shape": shape, "dim": int(dim), "index": int(index),
            "parts": int(parts)}


def _check_shard(name, shard, shape):
    """Raises ValueError unless `shard` (flat_shard/split_shard's) fits a gradient of this shape."""
    if not isinstance(shard, Mapping) or "logical_name" not in shard:
        raise ValueError(f"tensor '{name}': a shard is flat_shard(...) or split_shard(...), not {shard!r}")
    logical = math.prod(shard["logical_shape"])
    if "offset" in shard:
        if shard["offset"] + math.prod(shape) > logical:
            raise ValueError(f"tensor '{name}': elements {shard['offset']}..{shard['offset'] + math.prod(shape)} lie "
                             f"outside {shard['logical_name']}'s {logical}")
        return
    want = list(shard["logical_shape"])
    want[shard["dim"]] //= shard["parts"]
    if tuple(want) != tuple(shape):
        raise ValueError(f"tensor '{name}': shape {tuple(shape)} is not part {shard['index']} of {shard['parts']} of "
                         f"{shard['logical_name']} {tuple(shard['logical_shape'])} along dimension {shard['dim']}")


def _distributed(rank, world_size, layout):
    """The root's multi-rank attributes {name: int}, or {} for a single process: rank and
    world_size given, else torch.distributed's when it is initialised."""
    if (rank is None) != (world_size is None):
        raise ValueError("rank and world_size come together (pass both, or neither)")
    if rank is None:
        dist = getattr(sys.modules.get("torch"), "distributed", None)
        if dist is not None and dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
    if rank is None:
        if layout:
            raise ValueError("layout needs rank and world_size (or an initialised torch.distributed)")
        return {}
    if not isinstance(world_size, numbers.Integral) or not 1 <= world_size <= _MAX_WORLD:
        raise ValueError(f"world_size must be an integer in 1..{_MAX_WORLD}, not {world_size!r}")
    if not isinstance(rank, numbers.Integral) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in 0..{world_size - 1}, not {rank!r}")
    out = {"rank": int(rank), "world_size": int(world_size)}
    layout = {} if layout is None else layout
    if not isinstance(layout, Mapping) or set(layout) - set(_AXES):
        raise ValueError(f"layout maps some of {_AXES} to (rank, size), not {layout!r}")
    product = 1
    for axis in _AXES:
        if axis not in layout:
            continue
        try:
            r, n = (int(v) for v in layout[axis])
        except (TypeError, ValueError):
            raise ValueError(f"layout['{axis}'] must be (rank, size), not {layout[axis]!r}") from None
        if not 1 <= n <= world_size or not 0 <= r < n:
            raise ValueError(f"layout['{axis}'] = ({r}, {n}): need 0 <= rank < size <= world_size {world_size}")
        product *= n
        if world_size % product:
            raise ValueError(f"the layout's sizes do not divide world_size {world_size}")
        out[f"{axis}_rank"], out[f"{axis}_size"] = r, n
    return out


# ---- the recorder ---------------------------------------------------------------------------------

class Recorder:
    """Writes a trace (docs/trace.md) step by step. See the module documentation.

    path: the file (replaced if it exists, unless overwrite=False). model_description: free
    text for @model (architecture, data, seed). every: record steps with step % every == 0.
    mode: "raw", "hist" or "both". dtype: "float32", "float16", "bfloat16" or None (keep).
    created: @created (ISO 8601 UTC; default now). max_steps: the steps the file is laid out to
    take with crash-safe appends (at most 65535).
    Keyword-only: on_scale_change, on_nonfinite (also record those steps; default True);
    raw_budget (bytes of raw values, uncompressed; None: no limit); background (default True:
    a writer thread); max_pending, max_pending_bytes (the writer's queue); backend (None,
    "module", "torch", "numpy"); threads (the C++ histogram's and the compressor's, 0: all cores;
    None: 1 with the background writer, 0 without); on_written (called with each step number as
    its write completes, from the writer thread); block_stats (store per-block statistics, docs/trace.md
    "Block statistics"); rank, world_size, layout, shards: see
    "Distributed runs" in the module documentation.
    """

    def __init__(self, path, model_description, every=1, mode="both", dtype="float32", created=None,
                 overwrite=True, max_steps=4096, *, on_scale_change=True, on_nonfinite=True, raw_budget=None,
                 background=True, max_pending=2, max_pending_bytes=1 << 30, backend=None, threads=None,
                 on_written=None, rank=None, world_size=None, layout=None, shards=None, block_stats=False):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, not {every!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if dtype is not None and dtype not in _TORCH_DTYPES:
            raise ValueError(f"dtype must be float32, float16, bfloat16 or None, not {dtype!r}")
        if not isinstance(max_steps, int) or not 1 <= max_steps <= 65535:
            raise ValueError(f"max_steps must be an integer in 1..65535, not {max_steps!r}")
        if raw_budget is not None and (not isinstance(raw_budget, int) or raw_budget < 0):
            raise ValueError(f"raw_budget must be a number of bytes (int >= 0) or None, not {raw_budget!r}")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive integer, not {max_pending!r}")
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, not {backend!r}")
        if backend == "module":
            _host_backend(backend)  # RuntimeError now rather than in the writer
        if threads is None:
            # Not an explicit count without the writer thread: 0 lets the library go parallel only
            # above its threshold (2^20 values); small tensors on all cores cost more than they save.
            threads = 1 if background else 0
        if not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an integer >= 0 (0: all cores), not {threads!r}")
        dist = _distributed(rank, world_size, layout)
        self.shards = self._shard_table(shards)
        self.rank, self.world_size = dist.get("rank"), dist.get("world_size")
        self.path, self.every, self.mode, self.dtype, self.max_steps = str(path), every, mode, dtype, max_steps
        self.on_scale_change, self.on_nonfinite, self.raw_budget, self.backend = (
            on_scale_change, on_nonfinite, raw_budget, backend)
        self.steps_recorded = 0  # steps record() accepted (steps_written: whose write completed)
        self.raw_bytes = 0  # raw values accepted, uncompressed
        self._last, self._scale, self._budget_warned = None, None, False
        self._watches, self._next_step, self._called = [], None, None  # watch(): GEMM operands
        if created is None:
            created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.block_stats = _block_stats_choice(block_stats)
        self._writer = _Writer(self.path, overwrite, max_steps, (_producer(), str(model_description), created),
                               background, max_pending, max_pending_bytes, backend, threads, on_written, dist)
        if self._writer.lib is None:
            warnings.warn("fpscope_record: the HDF5 library is not reachable through ctypes; the trace is "
                          "valid but a process killed while linking a step can damage /steps", stacklevel=2)
        # Closes (writing what is queued) when the recorder is dropped unclosed, or at exit: the
        # writer thread holds no reference to the recorder.
        self._finalizer = weakref.finalize(self, self._writer.close)

    @staticmethod
    def _shard_table(shards):
        if shards is None:
            return {}
        if not isinstance(shards, Mapping):
            raise ValueError(f"shards maps tensor names to flat_shard(...) or split_shard(...), not {shards!r}")
        for name, sh in shards.items():
            if not isinstance(name, str):
                raise ValueError(f"shards: tensor names must be strings, not {name!r}")
        out = {}
        for name, sh in shards.items():
            keys = set(sh) if isinstance(sh, Mapping) else None
            flat, split = {"logical_name", "logical_shape", "offset"}, {"logical_name", "logical_shape", "dim", "index", "parts"}
            if keys not in (flat, split):
                raise ValueError(f"shards['{name}']: flat_shard(...) or split_shard(...), not {sh!r}")
            out[name] = flat_shard(**sh) if keys == flat else split_shard(**sh)  # checked again: a hand-made dict too
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def steps_written(self):
        """Steps whose write completed (on disk, linked, flushed)."""
        return self._writer.written

    def close(self):
        """Writes the queued steps and closes the file (idempotent). Raises RecorderError if the
        writer failed and no record() or flush() has raised it yet. Takes watch()'s hooks off."""
        for w in list(self._watches):
            w.remove()
        self._finalizer()

    def flush(self):
        """Returns when every step record() accepted is on disk; raises RecorderError if the writer failed."""
        if self._writer.closed:
            raise ValueError("the recorder is closed")
        self._writer.flush()

    def wants(self, step):
        """Whether record() records this step for its number alone (step % every == 0); a change
        of loss scale or a non-finite gradient can add others."""
        return step % self.every == 0

    def record(self, step, tensors, loss=None, lr=None, loss_scale=1.0, mode=None, nonfinite=None, shards=None,
               operand_mode=None, block_stats=None):
        """Records the tensors at this step if it is chosen (see the module documentation);
        returns whether it did.

        tensors: model.named_parameters() (their .grad) or name -> gradient (mapping or pairs).
        loss, lr: numbers or 0-d tensors (None: unknown, stored as NaN). loss_scale: the scale
        the run used; the gradients must already be unscaled. mode: overrides the recorder's.
        nonfinite: whether a gradient holds an inf or NaN, when known (None: checked if needed).
        shards: {name: flat_shard(...) | split_shard(...)} for this step, over the recorder's.
        operand_mode: the mode of the GEMM operands watch() captured for this step (default:
        watch()'s mode, else the step's). block_stats: False, True or "operands" for this step
        (None: the recorder's).
        With the background writer the step is queued when this returns (flush(): on disk);
        without, it is on disk. Raises RecorderError when the writer has failed.
        """
        w = self._writer
        if w.closed:
            raise ValueError("the recorder is closed")
        w.check()
        mode = self.mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        step = int(step)
        if step < 0 or step >= 10**8:
            raise ValueError(f"step {step} does not fit the 8-digit step group names")
        scale = _number(loss_scale)
        if operand_mode is not None and operand_mode not in MODES:
            raise ValueError(f"operand_mode must be one of {MODES}, not {operand_mode!r}")
        bs = self.block_stats if block_stats is None else _block_stats_choice(block_stats)
        params = {}
        pairs = _pairs(tensors, params)
        captured = self._operands(step)  # [(item, (role, layer, rows, cols), mode)]: watch()'s, this step's
        if not self._chosen(step, scale, pairs, nonfinite) and not captured:
            return False
        # The reader refuses steps out of order (docs/trace.md, "Steps"): refuse them here, before
        # anything of the step is written, rather than write a trace that cannot be read.
        if self._last is not None and step <= self._last:
            raise ValueError(f"step {step} is already recorded in {self.path}" if step == self._last else
                             f"step {step} comes after step {self._last} in {self.path}: steps must increase")
        links = [escape(name) for name, _ in pairs] + [escape(it.name) for it, _, _ in captured]
        if len(set(links)) != len(links):
            raise ValueError(f"step {step}: duplicate tensor names")
        table = self.shards if shards is None else {**self.shards, **self._shard_table(shards)}
        step_shards = [table.get(name) for name, _ in pairs]
        for (name, x), sh in zip(pairs, step_shards):
            if sh is not None:
                _check_shard(name, sh, tuple(int(n) for n in x.shape))
        dtypes = [_stored_dtype(x, self.dtype) for _, x in pairs]
        modes = [None] * len(pairs) + [operand_mode or m or mode for _, _, m in captured]
        if any(m != "hist" for m in [mode, *modes[len(pairs):]]):
            size = sum(_ITEMSIZE[d] * math.prod(x.shape) for d, (_, x) in zip(dtypes, pairs)) * (mode != "hist")
            size += sum(_ITEMSIZE[it.dtype] * math.prod(it.shape) for (it, _, _), m in zip(captured, modes[len(pairs):])
                        if m != "hist")
            if self.raw_budget is not None and self.raw_bytes + size > self.raw_budget:
                mode = "hist"
                modes = ["hist" if m is not None else m for m in modes]
                if not self._budget_warned:
                    self._budget_warned = True
                    warnings.warn(f"fpscope_record: raw_budget={self.raw_budget} bytes reached at step {step}: "
                                  "steps that do not fit get histograms only", stacklevel=2)
            else:
                self.raw_bytes += size
        if self.steps_recorded == self.max_steps:
            warnings.warn(f"fpscope_record: {self.path} holds max_steps={self.max_steps} steps; appending more is "
                          "no longer crash-safe (pass a larger max_steps)", stacklevel=2)
        items = [_Item(name, x, self.dtype, self.backend, mode != "hist" or bs is True) for name, x in pairs]
        roles = [self._wgrad_role(params.get(name)) for name, _ in pairs]
        bstats = [bs is True] * len(pairs) + [bool(bs)] * len(captured)
        for (it, role, _), m in zip(captured, modes[len(pairs):]):
            it.mode = m
            if m == "hist" and it.launched is not None and not bs:
                it.raw, it.nbytes = None, 0  # a device tensor's histogram is queued there: no host copy needed
            items.append(it)
            roles.append(role)
        w.submit(_Step(step, f"{step:08d}", (step, _number(loss), _number(lr), scale), items, mode,
                       sum(it.nbytes for it in items), step_shards + [None] * len(captured), roles, bstats))
        self._last = step
        self.steps_recorded += 1
        return True

    # -- GEMM operands (docs/trace.md, "GEMM operands")

    def watch(self, model, layers="*", every=1, mode=None):
        """Records the GEMM operands of the nn.Linear (and simple nn.Conv2d: im2col) modules of `model` whose names (as in
        model.named_modules()) match `layers` (an fnmatch pattern or a list of them): on steps
        with step % every == 0, each such layer's forward input X (as tokens x in), its weight W
        (out x in) and its output gradient dY (tokens x out), as tensors "<layer>:input",
        "<layer>:weight", "<layer>:grad" with @role, @layer and @gemm_shape; its weight's gradient,
        when record() gets it (model.named_parameters()), is tagged role "wgrad" on every step.
        mode: the operands' mode (None: the step's; record(..., operand_mode=...) overrides it
        for one step).

        The operands are copied (once, as record() copies gradients) by hooks during the forward
        and backward of the step: a forward hook (X, W) and a hook on the autograd node of the
        GEMM (dY: the gradient the module's own backward receives). They need to know the step before
        record() is called: it is the step given to begin_step(), else the step after the one
        the previous record() call was given (0 at first), so call record() on every step or
        begin_step(step) before each forward. Forward calls with gradients disabled
        (torch.no_grad: evaluation) are not captured; a module called twice in a step is
        captured at its first call. Returns a handle whose remove() takes the hooks off.
        """
        import fnmatch

        import torch

        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be a positive integer, not {every!r}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"mode must be one of {MODES} or None, not {mode!r}")
        patterns = [layers] if isinstance(layers, str) else list(layers)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"layers must be a pattern or a list of patterns (strings), not {layers!r}")
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"watch needs a torch.nn.Module, not {type(model).__name__}")
        named = [(n, m) for n, m in model.named_modules() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        chosen = [(n, m) for n, m in named if isinstance(m, torch.nn.Linear) or _simple_conv(m)]
        others = [n for n, m in named if isinstance(m, torch.nn.Conv2d) and not _simple_conv(m)]
        if others:
            warnings.warn(f"fpscope_record: watch() leaves out the Conv2d modules {others}: only groups=1, zero "
                          "padding given as numbers, is recorded as im2col GEMM operands", stacklevel=2)
        if not chosen:
            raise ValueError(f"no nn.Linear (or simple nn.Conv2d) module of the model matches {patterns}")
        taken = {id(m) for w in self._watches for _, m in w.modules}
        if any(id(m) in taken for _, m in chosen):
            raise ValueError("a module is already watched by this recorder")
        w = _Watch(self, chosen, every, mode)
        self._watches.append(w)
        return w

    def begin_step(self, step):
        """Says which step the next forward and backward belong to (for watch()); needed only
        when record() is not called on every step, in order."""
        self._next_step = int(step)

    def _capturing(self, every):
        """Whether the hooks of a watch with this `every` capture now (see watch())."""
        step = self._next_step if self._next_step is not None else (0 if self._called is None else self._called + 1)
        return step % every == 0

    def _operands(self, step):
        """The operands the hooks captured for this step, taken from them: [(item, operand, mode)]."""
        self._called, self._next_step = step, None
        out = []
        for w in self._watches:
            out += w.take(step)
        return out

    def _wgrad_role(self, param):
        """(role "wgrad", layer, rows, cols) when `param` is a watched layer's weight, else None."""
        for w in self._watches:
            layer = w.weights.get(id(param))
            if layer is not None:
                return ("wgrad", layer, *w.gemm_shape(param))
        return None

    def _chosen(self, step, scale, pairs, nonfinite):
        last, self._scale = self._scale, scale
        if step % self.every == 0:
            return True
        if self.on_scale_change and last is not None and not (scale == last or math.isnan(scale) and math.isnan(last)):
            return True
        if self.on_nonfinite:
            return bool(_nonfinite(pairs) if nonfinite is None else nonfinite)
        return False


_Step = collections.namedtuple("_Step", "step link attrs items mode nbytes shards roles bstats")


def _simple_conv(m):
    """Whether watch() records the nn.Conv2d `m` as a GEMM (im2col, as cuDNN's implicit GEMM sees
    it): one group, zero padding given as numbers (not "same"), any stride and dilation."""
    import torch

    return (isinstance(m, torch.nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


class _Watch:
    """The hooks of one Recorder.watch(): on a capturing step, each layer's X and W at its first
    forward call with gradients enabled, and the gradient of that call's output (dY).

    dY comes from a hook on the autograd node of the GEMM that made the output (addmm's, of
    which a 3-D input's output is a view; its grad_outputs are the module's grad_output) rather
    than register_full_backward_hook or a hook on the output tensor: an in-place op on the
    output afterwards (relu_) rebuilds the output's own history (a tensor hook or one on a view's
    node then never fires, in torch 1.13) and a full backward hook's BackwardHookFunction
    refuses in-place ops on the output, while the GEMM's node stays in the graph and receives
    the gradient of the value it produced. It also fires for a first layer whose input needs no
    gradient."""

    def __init__(self, rec, modules, every, mode):
        self.rec, self.modules, self.every, self.mode = weakref.proxy(rec), modules, every, mode
        # A convolution's weight gradient is 4-D, not the 2-D GEMM result: it is not tagged wgrad.
        self.weights = {id(m.weight): n for n, m in modules if not _simple_conv(m)}
        self.captured = {}  # layer -> {"input": (item, operand), ...}, for the step being captured
        self.warned = False
        self.handles = [m.register_forward_hook(self._forward_hook(n)) for n, m in modules]

    @staticmethod
    def gemm_shape(t):
        """The 2-D shape of a Linear operand: (product of the leading dims, last dim)."""
        cols = int(t.shape[-1]) if t.dim() else 1
        return (t.numel() // cols if cols else 0), cols

    def _item(self, layer, role, x):
        it = _Item(f"{layer}:{role}", x, self.rec.dtype, self.rec.backend, True)
        return it, (role, layer, *self.gemm_shape(x))

    def _forward_hook(self, layer):
        def hook(module, inputs, output):
            import torch

            try:
                if not torch.is_grad_enabled() or layer in self.captured or not self.rec._capturing(self.every):
                    return None
            except ReferenceError:  # the recorder is gone (dropped unclosed): nothing to capture for
                return None
            x = inputs[0] if isinstance(inputs, tuple) else inputs
            w = module.weight
            conv = _simple_conv(module)
            if conv:  # im2col: X (N*L x C*kh*kw), W (C_out x C*kh*kw), dY (N*L x C_out), as the GEMM sees them
                x = torch.nn.functional.unfold(x.detach() if x.dim() == 4 else x.detach().unsqueeze(0), module.kernel_size,
                                               module.dilation, module.padding, module.stride)
                x = x.transpose(1, 2).reshape(-1, x.shape[1])
                w = w.detach().reshape(w.shape[0], -1)
            got = self.captured[layer] = {"input": self._item(layer, "input", x),
                                          "weight": self._item(layer, "weight", w)}
            # The GEMM's own node: a 3-D input's output is a view of the GEMM's 2-D result.
            made = output._base if isinstance(output, torch.Tensor) and output._is_view() else output
            if isinstance(made, torch.Tensor) and made.grad_fn is not None:
                nr, shape = made.output_nr, output.shape

                def grad_hook(grad_inputs, grad_outputs):
                    if "grad" not in got and grad_outputs[nr] is not None:
                        g = grad_outputs[nr].reshape(shape)
                        if conv:  # (N, C_out, H, W) -> (N*H*W, C_out): the rows of X's im2col, in its order
                            g = g.reshape(-1, *g.shape[-3:]).permute(0, 2, 3, 1).reshape(-1, g.shape[-3])
                        got["grad"] = self._item(layer, "grad", g)
                made.grad_fn.register_hook(grad_hook)
            return None
        return hook

    def take(self, step):
        """[(item, operand, mode)] captured for `step` (in module order: input, weight, grad), and
        a fresh start for the next step. Operands captured under a step number that record() did
        not get are dropped (a warning says so once)."""
        captured, self.captured = self.captured, {}
        if not captured:
            return []
        if step % self.every:
            if not self.warned:
                self.warned = True
                warnings.warn(f"fpscope_record: GEMM operands were captured for a step that record() got as step "
                              f"{step}, which watch(every={self.every}) does not record: dropped (call record() on "
                              "every step, or begin_step(step) before the forward)", stacklevel=3)
            return []
        out = []
        for layer, _ in self.modules:
            for role in ("input", "weight", "grad"):
                if role in captured.get(layer, {}):
                    it, operand = captured[layer][role]
                    out.append((it, operand, self.mode))
        return out

    def remove(self):
        """Takes the hooks off (and drops what they captured)."""
        for h in self.handles:
            h.remove()
        self.handles, self.captured = [], {}
        try:
            if self in self.rec._watches:
                self.rec._watches.remove(self)
        except ReferenceError:
            pass


class _Writer:
    """The file, and the thread that writes the steps into it in order. It holds no reference to
    the Recorder (so that an unclosed one is finalized). The first error stops the writing; it is
    kept until a caller has been told."""

    def __init__(self, path, overwrite, max_steps, root, background, max_pending, max_pending_bytes, backend,
                 threads, on_written, dist=None):
        self.path, self.backend, self.threads, self.on_written = path, backend, threads, on_written
        self.max_pending, self.max_pending_bytes = max_pending, max_pending_bytes
        self.written, self.error, self.error_step, self.reported = 0, None, None, False
        self.closed, self.closing, self.thread, self.pool = False, False, None, None
        self.jobs, self.held, self.cv = collections.deque(), 0, threading.Condition()
        self.file = self.fd = None
        self.file, self.lib = _create(path, overwrite)
        try:
            self.fd = os.open(path, os.O_RDWR)
            self.file.attrs.create("fpscope_trace_version", np.int32(FORMAT_VERSION))
            self.file.attrs.create("fpscope_trace_minor", np.int32(FORMAT_MINOR))
            for name, text in zip(("producer", "model", "created"), root):
                _text(self.file, name, text)
            for name, v in (dist or {}).items():
                self.file.attrs.create(name, np.int64(v))
            self.steps = _group(self.lib, self.file, "steps", links=max_steps)
            self._flush()
        except BaseException:
            self._close_file()
            raise
        if threads != 1:
            import concurrent.futures

            self.pool = concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count() or 1, "fpscope_record zlib")
        if background:
            self.thread = threading.Thread(target=self._run, name=f"fpscope_record writer ({path})", daemon=True)
            self.thread.start()

    # -- the caller's side

    def check(self):
        """Raises the writer's error, if any (every time: the writer has stopped)."""
        if self.error is not None:
            self.reported = True
            raise RecorderError(f"fpscope_record: the writer failed on step {self.error_step} of {self.path}: "
                                f"{type(self.error).__name__}: {self.error}", self.error_step) from self.error

    def submit(self, job):
        if self.thread is None:
            self._write(job)
            return
        with self.cv:
            # Back-pressure: wait while the queue is full (one step always fits an empty queue).
            while self.error is None and self.jobs and (
                    len(self.jobs) >= self.max_pending or self.held + job.nbytes > self.max_pending_bytes):
                self.cv.wait()
            self.check()
            self.jobs.append(job)
            self.held += job.nbytes
            self.cv.notify_all()

    def flush(self):
        if self.thread is not None:
            with self.cv:
                while self.jobs:
                    self.cv.wait()
        self.check()

    def close(self):
        if self.closed:
            return
        try:
            if self.thread is not None:
                with self.cv:
                    self.closing = True
                    self.cv.notify_all()
                self.thread.join()
        finally:
            if self.thread is None or not self.thread.is_alive():  # not while it writes (an interrupted join)
                self.closed = True
                self._close_file()
                if self.pool is not None:
                    self.pool.shutdown()
        if not self.reported:
            self.check()

    def _close_file(self):
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # -- the writer thread

    def _run(self):
        while True:
            with self.cv:
                while not self.jobs and not self.closing:
                    self.cv.wait()
                if not self.jobs:
                    return
                job = self.jobs[0]
            if self.error is None:  # after an error the queued steps are dropped
                try:
                    self._write(job)
                except BaseException as e:  # noqa: BLE001  (raised by the caller's next call)
                    self.error, self.error_step = e, job.step
            with self.cv:
                self.jobs.popleft()
                self.held -= job.nbytes
                self.cv.notify_all()

    def _write(self, job):
        lib = self.lib
        # 1. The step, whole, as an unlinked group: nothing a reader can reach changes.
        g = _group(lib, self.file, None, links=1)
        for name, v, t in zip(("step", "loss", "lr", "loss_scale"), job.attrs, (np.int64, *[np.float64] * 3)):
            g.attrs.create(name, t(v))
        links = [escape(it.name) for it in job.items]
        tg = _group(lib, g, "tensors", links=len(links), name_len=max(map(len, links), default=1))
        for it, ln, sh, role, want_bs in zip(job.items, links, job.shards, job.roles, job.bstats):
            mode = it.mode or job.mode
            raw_wanted, hist_wanted = mode in ("raw", "both"), mode in ("hist", "both")
            raw, keys, counts, stats = it.resolve(self.backend, self.threads, raw_wanted or want_bs, hist_wanted)
            bstats = _block_stats(it.dtype, it.shape, raw, self.threads) if want_bs else None
            _put_tensor(_group(lib, tg, ln, links=3, name_len=11), it.dtype, it.shape, stats,
                        raw if raw_wanted else None, (keys, counts) if hist_wanted else None, self.pool, sh, role, bstats)
            it.raw = it.launched = None  # the copies go as soon as they are written
        g.attrs.create("complete", np.int8(1))  # docs/trace.md: written last, the step is whole
        self._flush()
        # 2. Link it: one in-place write of /steps' header (its link storage is preallocated).
        self.steps[job.link] = g
        self._flush()
        self.written += 1
        if self.on_written is not None:
            self.on_written(job.step)

    def _flush(self):
        """H5Fflush, with the file kept PAD bytes (a sparse hole) longer than the end of
        allocation meanwhile: HDF5 writes the superblock, with the new end of allocation, before
        it extends the file, and a file shorter than its superblock says does not open."""
        os.ftruncate(self.fd, max(os.fstat(self.fd).st_size, self.file.id.get_filesize() + PAD))
        self.file.flush()
        os.ftruncate(self.fd, self.file.id.get_filesize())


def _put_tensor(t, dtype, shape, stats, raw, hist, pool=None, shard=None, operand=None, bstats=None):
    """A tensor group's attributes and datasets (raw: the stored elements or None; hist: (keys, counts) or None;
    shard: flat_shard/split_shard's description or None; operand: (role, layer, rows, cols) or None)."""
    _text(t, "dtype", dtype)
    t.attrs.create("shape", np.asarray(shape, dtype=np.int64).reshape(-1))
    t.attrs.create("count", np.uint64(stats["count"]))
    t.attrs.create("amax", np.float64(stats["amax"]))
    for k in ("zeros", "infs", "nans"):
        t.attrs.create(k, np.uint64(stats[k]))
    if shard is not None:
        _text(t, "logical_name", shard["logical_name"])
        t.attrs.create("logical_shape", np.asarray(shard["logical_shape"], dtype=np.int64).reshape(-1))
        if "offset" in shard:
            t.attrs.create("shard_offset", np.uint64(shard["offset"]))
            t.attrs.create("shard_length", np.uint64(stats["count"]))
        else:
            for k, a in (("dim", "split_dim"), ("index", "split_index"), ("parts", "split_count")):
                t.attrs.create(a, np.uint64(shard[k]))
    if operand is not None:  # docs/trace.md, "GEMM operands"
        _text(t, "role", operand[0])
        _text(t, "layer", operand[1])
        t.attrs.create("gemm_shape", np.asarray(operand[2:], dtype=np.int64))
    if raw is not None:
        _dataset(t, "values", raw, pool)
    if hist is not None:
        _dataset(t, "hist_keys", hist[0])
        _dataset(t, "hist_counts", hist[1])
    if bstats is not None:
        for name, data in bstats.items():
            _dataset(t, name, data)


def _block_stats_choice(v):
    if v not in (False, True, "operands"):
        raise ValueError(f"block_stats must be False, True or 'operands', not {v!r}")
    if v:
        _block_stats_module()  # RuntimeError now rather than in the writer
    return v


def _block_stats_module():
    try:  # absolute, as _module_summary: tools/record's copy is imported outside the package
        from fpscope import _fpscope
    except ImportError as e:
        raise RuntimeError("block_stats=True needs the compiled fpscope module (_fpscope)") from e
    return _fpscope


def _block_stats(dtype, shape, raw, threads):
    """The `bstats_*` datasets of a tensor (docs/trace.md "Block statistics"): the C++ module's
    block statistics of its values seen as (count / last dimension) x (last dimension)."""
    x = widen(dtype, raw)
    if x.size == 0:
        return None
    cols = int(shape[-1]) if len(shape) else 1
    return _block_stats_module().block_stats_datasets(x.reshape(-1, cols), threads)


def _tensors(tensors, dtype):
    """(name, dtype, shape, raw stored elements) of every tensor to record, in order."""
    out = []
    for name, x in _pairs(tensors):
        it = _Item(name, x, dtype, "numpy", True)
        out.append((name, it.dtype, it.shape, _raw_bits(it.raw, it.dtype)))
    return out


def _write_tensor(t, dtype, shape, raw, mode):
    """A tensor group from its stored elements, written at once (the plain writer of the tests)."""
    keys, counts, stats = summarize(widen(dtype, raw))
    _put_tensor(t, dtype, shape, stats, raw if mode != "hist" else None, (keys, counts) if mode != "raw" else None)


# h5py's lock around every HDF5 call it makes: the ctypes calls take it too, since the writer
# thread makes them while the program may use h5py on another thread, and an HDF5 built without
# its thread-safety option (h5py's wheels) must never be entered by two threads at once.
_PHIL = getattr(getattr(h5py, "_objects", None), "phil", None) or contextlib.nullcontext()


def _hdf5_library():
    """The HDF5 library h5py runs on, through ctypes, or None where it cannot be told for sure."""
    try:
        import ctypes
        import re

        with open("/proc/self/maps") as m:
            paths = {p for p in re.findall(r"(/\S+)$", m.read(), re.M)
                     if re.match(r"libhdf5[^/]*\.so", os.path.basename(p)) and "_hl" not in os.path.basename(p)}
        # Two in one process when h5py brings its own (PyPI's wheel, in h5py.libs) and the fpscope
        # module links the system's: h5py's is the one under h5py's own folders.
        mine = {p for p in paths if p.startswith(os.path.dirname(os.path.dirname(h5py.__file__)) + os.sep + "h5py")}
        if len(paths) > 1 and len(mine) == 1:
            paths = mine
        if len(paths) != 1:
            return None
        lib = ctypes.CDLL(paths.pop())
        v = [ctypes.c_uint() for _ in range(3)]
        if lib.H5get_libversion(*map(ctypes.byref, v)) < 0 or tuple(x.value for x in v) != h5py.version.hdf5_version_tuple:
            return None
        for f in ("H5Pset_istore_k", "H5Pset_link_phase_change", "H5Pset_est_link_info", "H5Fset_dset_no_attrs_hint"):
            getattr(lib, f)
        return lib
    except Exception:  # not Linux, HDF5 < 1.10.5, ...
        return None


def _create(path, overwrite):
    """Creates the file; returns (h5py.File, the ctypes HDF5 library or None).

    - Format bounds "earliest" (HDF5 1.8 readers and later): object headers of version 1, which
      carry no checksum. With checksums (libver v108 and later), a write of /steps' header cut
      by a kill at a page boundary leaves a header whose checksum fails: the whole trace is
      lost. Not "latest": HDF5 1.10's superblock 3 records "open for writing" and a file whose
      writer was killed refuses to open until `h5clear -s`.
    - Every group tracks link creation order: that makes HDF5 use compact link storage (links
      in the group's header) instead of a symbol table (a B-tree and a heap per group).
    - Chunk index B-trees of rank 2 (a 1-chunk dataset's index takes ~180 bytes, not 2 KiB) and
      minimal dataset headers (datasets here never get attributes): steps of histograms get ~4x
      smaller. Not rank 1: libhdf5 1.10.8 then writes a dataset of more than 256 chunks that it
      cannot read back (a tensor of more than 2^28 elements), and fails on ~1000 chunks.
    """
    import ctypes

    lib = _hdf5_library()
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_V18)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    if lib is not None:
        with _PHIL:
            lib.H5Pset_istore_k(ctypes.c_int64(fcpl.id), ctypes.c_uint(2))
    flags = h5py.h5f.ACC_TRUNC if overwrite else h5py.h5f.ACC_EXCL
    fid = h5py.h5f.create(os.fsencode(path), flags, fapl=fapl, fcpl=fcpl)
    if lib is not None:
        with _PHIL:
            lib.H5Fset_dset_no_attrs_hint(ctypes.c_int64(fid.id), ctypes.c_uint(1))
    return h5py.File(fid), lib


def _group(lib, parent, name, links, name_len=8):
    """A new group (name None: anonymous) whose links iterate in creation order, with compact
    link storage (links in its header; never converted to a heap + B-tree) allocated up front
    for `links` links of names about name_len long."""
    import ctypes

    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
    if lib is not None:
        with _PHIL:
            lib.H5Pset_link_phase_change(ctypes.c_int64(gcpl.id), ctypes.c_uint(65535), ctypes.c_uint(65535))
            lib.H5Pset_est_link_info(ctypes.c_int64(gcpl.id), ctypes.c_uint(min(max(links, 1), 65535)),
                                     ctypes.c_uint(min(max(name_len, 1), 65535)))
    return h5py.Group(h5py.h5g.create(parent.id, None if name is None else name.encode(), gcpl=gcpl))


def _text(obj, name, text):
    """A string attribute, fixed-length UTF-8, in the object's header. (h5py's default,
    variable-length, keeps the text in a global heap collection shared by every string of the
    file and rewritten at each flush: one interrupted write could damage the strings of every
    step recorded before.)"""
    b = text.encode("utf-8")
    obj.attrs.create(name, np.array(b, dtype=h5py.string_dtype("utf-8", max(len(b), 1))))


def _dataset(group, name, data, pool=None):
    """A 1-D dataset: chunked (<= 2^20 elements), shuffle + deflate 4; empty: contiguous, no filters.

    The chunks are filtered here and written as they are (H5Dwrite_chunk), so that the writer
    thread holds the GIL only between them: zlib releases it while it deflates (pool: several
    chunks at a time). The bytes are those HDF5's own filters would write (_chunk_bytes)."""
    data = data.astype(data.dtype.newbyteorder("<"), copy=False).reshape(-1)  # little-endian, as docs/trace.md says
    if data.size == 0:
        return group.create_dataset(name, shape=(0,), dtype=data.dtype)
    chunk = min(data.size, CHUNK)
    d = group.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=(chunk,), shuffle=True,
                             compression="gzip", compression_opts=DEFLATE_LEVEL)
    starts = range(0, data.size, chunk)
    # A window of chunks at a time: memory for the compressed chunks stays bounded.
    window = 1 if pool is None else 16
    for w in range(0, len(starts), window):
        part = starts[w : w + window]
        args = [(data[lo : lo + chunk], chunk) for lo in part]
        blobs = map(_chunk_bytes, *zip(*args)) if pool is None or len(part) == 1 else pool.map(_chunk_bytes, *zip(*args))
        for lo, blob in zip(part, blobs):
            d.id.write_direct_chunk((lo,), blob)
    return d


def _chunk_bytes(part, length):
    """One stored chunk as HDF5 1.10's filters make it: the elements padded with the fill value (0)
    to the chunk's length (HDF5 stores whole chunks), byte-shuffled (H5Zshuffle.c: byte 0 of
    every element, then byte 1, ...), deflated into a zlib stream (H5Zdeflate.c: compress2 at
    the level)."""
    if part.size < length:
        part = np.concatenate([part, np.zeros(length - part.size, part.dtype)])
    b = part.view(np.uint8)
    if part.itemsize > 1:
        b = np.ascontiguousarray(b.reshape(-1, part.itemsize).T)
    return zlib.compress(b, DEFLATE_LEVEL)
