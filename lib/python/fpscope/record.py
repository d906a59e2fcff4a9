"""fpscope.record: records the gradients of a PyTorch training loop into an fpscope trace.

A trace is an HDF5 file in the format of docs/trace.md (version 1): one group per recorded
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

Behaviour:

- record(step, tensors, ...) records only when step % every == 0 (it returns whether it did).
  `tensors` is model.named_parameters() (each parameter's .grad is recorded; parameters whose
  .grad is None are skipped) or a mapping / iterable of (name, tensor) pairs holding the
  gradients themselves (torch tensors, or numpy arrays: float32, float16, and ml_dtypes'
  bfloat16 / float8_e4m3fn / float8_e5m2).
- Gradients are stored as given: pass unscaled gradients (with a GradScaler, call
  scaler.unscale_(optimizer) first) and the scale in loss_scale=.
- dtype="float32" | "float16" | "bfloat16" converts every tensor to that type (round to
  nearest even) before recording; dtype=None keeps each tensor's own type.
- mode="raw" stores `values`, "hist" the histogram (`hist_keys`, `hist_counts`: at most a few
  thousand buckets per tensor), "both" both; record(..., mode=...) overrides it for one step.
- Safe against being killed (docs/trace.md, "Writing safely"): when record() returns, the
  step is on disk; a process killed at any moment leaves a file that opens and holds every
  step record() returned from, each whole, and at most one more (whole too). This holds for up
  to max_steps steps (default 4096; the /steps group is allocated for them up front, about 40
  bytes each); past that, appending a step is no longer a single write (a warning says so).
  How: each step is built as an unlinked (anonymous) group and flushed, then linked into
  /steps, whose link storage is preallocated so that the link is one in-place write, and
  flushed again; object headers without checksums (file format bounds "earliest"), fixed-
  length strings, and the file kept longer than its end of allocation while flushing.
  tests/record/test_crash.py checks it after every write of a run; docs/trace.md says why.
- h5py reads the string attributes (fixed-length UTF-8) as bytes: .decode() them.

Needs numpy and h5py (HDF5 >= 1.10.5 for the tunings reached through ctypes: the HDF5 library
h5py loaded); torch only for torch tensors.
"""

import datetime
import math
import numbers
import os
import sys
import warnings
from collections.abc import Mapping

import h5py
import numpy as np

FORMAT_VERSION = 1
PRODUCER_VERSION = 1
DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")
MODES = ("raw", "hist", "both")
CHUNK = 1 << 20  # elements per chunk of a values dataset (docs/trace.md: at most 2^20)
PAD = 4 << 20  # sparse bytes kept past the end of allocation while flushing (see Recorder._flush)

__all__ = ["Recorder", "bucket_keys", "histogram", "escape", "unescape", "tensor_stats", "DTYPES", "MODES"]


def escape(name):
    """A tensor name as an HDF5 link name: '%' -> '%25', '/' -> '%2F' (in that order)."""
    return name.replace("%", "%25").replace("/", "%2F")


def unescape(link):
    """The inverse of escape()."""
    return link.replace("%2F", "/").replace("%25", "%")


_U32 = np.uint32


def bucket_keys(x):
    """The bucket key (docs/hist.md) of every element of a float32 array, as uint32.

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
    """The sparse bucket histogram of a float32 array: (sorted nonzero keys uint32, counts uint64)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    counts = np.zeros(1 << 16, dtype=np.uint64)
    for lo in range(0, flat.size, CHUNK):
        counts += np.bincount(bucket_keys(flat[lo : lo + CHUNK]), minlength=1 << 16).astype(np.uint64)
    keys = np.flatnonzero(counts).astype(np.uint32)
    return keys, counts[keys]


def tensor_stats(w):
    """count, amax (max |x| over the finite elements, 0 if none), zeros, infs, nans of a float32 array."""
    w = w.reshape(-1)
    finite = np.isfinite(w)
    amax = float(np.max(np.abs(w[finite]))) if finite.any() else 0.0
    return {"count": int(w.size), "amax": amax, "zeros": int(np.count_nonzero(w == 0)),
            "infs": int(np.count_nonzero(np.isinf(w))), "nans": int(np.count_nonzero(np.isnan(w)))}


def _from_torch(x, dtype):
    import torch

    x = x.detach()
    if dtype is not None:
        x = x.to({"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype])
    shape = tuple(x.shape)
    flat = x.cpu().contiguous().reshape(-1)
    if flat.dtype == torch.float32:
        return "float32", shape, flat.numpy()
    if flat.dtype == torch.float16:
        return "float16", shape, flat.view(torch.int16).numpy().view(np.uint16)
    if flat.dtype == torch.bfloat16:
        return "bfloat16", shape, flat.view(torch.int16).numpy().view(np.uint16)
    raise TypeError(f"cannot record a {flat.dtype} tensor (pass dtype='float32' to convert it)")


def _from_numpy(a, dtype):
    a = np.asarray(a)
    kind = a.dtype.name
    if dtype is not None and kind != dtype:
        if kind in ("float32", "float64", "float16") or kind in DTYPES:
            import torch

            return _from_torch(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)), dtype)
        raise TypeError(f"cannot record a {kind} array")
    shape = a.shape
    flat = np.ascontiguousarray(a).reshape(-1)
    if kind == "float32":
        return "float32", shape, flat
    if kind in ("float16", "bfloat16"):
        return kind, shape, flat.view(np.uint16)
    if kind in ("float8_e4m3fn", "float8_e5m2"):
        return kind, shape, flat.view(np.uint8)
    raise TypeError(f"cannot record a {kind} array (pass dtype='float32' to convert it)")


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


def _tensors(tensors, dtype):
    """(name, dtype, shape, raw) for every tensor to record, in order."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    out = []
    for name, x in items:
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, not {type(name).__name__}")
        if isinstance(x, np.ndarray) or np.isscalar(x):
            out.append((name, *_from_numpy(x, dtype)))
            continue
        import torch

        if isinstance(x, torch.nn.Parameter):
            if x.grad is None:
                continue
            x = x.grad
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"tensor '{name}': cannot record a {type(x).__name__}")
        out.append((name, *_from_torch(x, dtype)))
    return out


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


class Recorder:
    """Writes a trace (docs/trace.md) step by step. See the module documentation.

    path: the file (replaced if it exists, unless overwrite=False). model_description: free
    text for @model (architecture, data, seed). every: record steps with step % every == 0.
    mode: "raw", "hist" or "both". dtype: "float32", "float16", "bfloat16" or None (keep).
    created: @created (ISO 8601 UTC; default now). max_steps: the steps the file is laid out to
    take with crash-safe appends (at most 65535).
    """

    def __init__(self, path, model_description, every=1, mode="both", dtype="float32", created=None,
                 overwrite=True, max_steps=4096):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, not {every!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if dtype is not None and dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16, bfloat16 or None, not {dtype!r}")
        if not isinstance(max_steps, int) or not 1 <= max_steps <= 65535:
            raise ValueError(f"max_steps must be an integer in 1..65535, not {max_steps!r}")
        self.path, self.every, self.mode, self.dtype, self.max_steps = str(path), every, mode, dtype, max_steps
        self.steps_recorded = 0
        self._file = self._fd = None
        self._file, self._lib = _create(self.path, overwrite)
        if self._lib is None:
            warnings.warn("fpscope_record: the HDF5 library is not reachable through ctypes; the trace is "
                          "valid but a process killed while linking a step can damage /steps", stacklevel=2)
        self._fd = os.open(self.path, os.O_RDWR)
        try:
            self._file.attrs.create("fpscope_trace_version", np.int32(FORMAT_VERSION))
            _text(self._file, "producer", _producer())
            _text(self._file, "model", str(model_description))
            if created is None:
                created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            _text(self._file, "created", created)
            self._steps = _group(self._lib, self._file, "steps", links=max_steps)
            self._flush()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Closes the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wants(self, step):
        """Whether record() would record this step (step % every == 0)."""
        return step % self.every == 0

    def record(self, step, tensors, loss=None, lr=None, loss_scale=1.0, mode=None):
        """Records the tensors at this step if step % every == 0; returns whether it did.

        tensors: model.named_parameters() (their .grad) or name -> gradient (mapping or pairs).
        loss, lr: numbers or 0-d tensors (None: unknown, stored as NaN). loss_scale: the scale
        the run used; the gradients must already be unscaled. mode: overrides the recorder's.
        The step is on disk (flushed) when this returns.
        """
        if self._file is None:
            raise ValueError("the recorder is closed")
        if not self.wants(step):
            return False
        mode = self.mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        step = int(step)
        if step < 0 or step >= 10**8:
            raise ValueError(f"step {step} does not fit the 8-digit step group names")
        link = f"{step:08d}"
        if link in self._steps:
            raise ValueError(f"step {step} is already recorded in {self.path}")
        items = _tensors(tensors, self.dtype)
        links = [escape(name) for name, *_ in items]
        if len(set(links)) != len(links):
            raise ValueError(f"step {step}: duplicate tensor names")
        if self.steps_recorded == self.max_steps:
            warnings.warn(f"fpscope_record: {self.path} holds max_steps={self.max_steps} steps; appending more is "
                          "no longer crash-safe (pass a larger max_steps)", stacklevel=2)

        # 1. The step, whole, as an unlinked group: nothing a reader can reach changes.
        g = _group(self._lib, self._file, None, links=1)
        g.attrs.create("step", np.int64(step))
        g.attrs.create("loss", np.float64(_number(loss)))
        g.attrs.create("lr", np.float64(_number(lr)))
        g.attrs.create("loss_scale", np.float64(_number(loss_scale)))
        tg = _group(self._lib, g, "tensors", links=len(links), name_len=max(map(len, links), default=1))
        for (name, dtype, shape, raw), ln in zip(items, links):
            self._write_tensor(_group(self._lib, tg, ln, links=3, name_len=11), dtype, shape, raw, mode)
        g.attrs.create("complete", np.int8(1))  # docs/trace.md: written last, the step is whole
        self._flush()
        # 2. Link it: one in-place write of /steps' header (its link storage is preallocated).
        self._steps[link] = g
        self._flush()
        self.steps_recorded += 1
        return True

    def _flush(self):
        """H5Fflush, with the file kept PAD bytes (a sparse hole) longer than the end of
        allocation meanwhile: HDF5 writes the superblock, with the new end of allocation, before
        it extends the file, and a file shorter than its superblock says does not open."""
        os.ftruncate(self._fd, max(os.fstat(self._fd).st_size, self._file.id.get_filesize() + PAD))
        self._file.flush()
        os.ftruncate(self._fd, self._file.id.get_filesize())

    @staticmethod
    def _write_tensor(t, dtype, shape, raw, mode):
        w = widen(dtype, raw)
        s = tensor_stats(w)
        _text(t, "dtype", dtype)
        t.attrs.create("shape", np.asarray(shape, dtype=np.int64).reshape(-1))
        t.attrs.create("count", np.uint64(s["count"]))
        t.attrs.create("amax", np.float64(s["amax"]))
        for k in ("zeros", "infs", "nans"):
            t.attrs.create(k, np.uint64(s[k]))
        if mode in ("raw", "both"):
            _dataset(t, "values", raw)
        if mode in ("hist", "both"):
            keys, counts = histogram(w)
            _dataset(t, "hist_keys", keys)
            _dataset(t, "hist_counts", counts)


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
        lib.H5Pset_istore_k(ctypes.c_int64(fcpl.id), ctypes.c_uint(2))
    flags = h5py.h5f.ACC_TRUNC if overwrite else h5py.h5f.ACC_EXCL
    fid = h5py.h5f.create(os.fsencode(path), flags, fapl=fapl, fcpl=fcpl)
    if lib is not None:
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


def _dataset(group, name, data):
    """A 1-D dataset: chunked (<= 2^20 elements), shuffle + deflate 4; empty: contiguous, no filters."""
    data = data.astype(data.dtype.newbyteorder("<"), copy=False)  # little-endian, as docs/trace.md says
    if data.size == 0:
        return group.create_dataset(name, shape=(0,), dtype=data.dtype)
    return group.create_dataset(name, data=data, chunks=(min(data.size, CHUNK),), shuffle=True,
                                compression="gzip", compression_opts=4)
