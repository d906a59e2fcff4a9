"""fpscope: bit-exact low-precision floating point from Python.

The numbers come from the C++ library (the `_fpscope` extension built next to this file), in
this process: conversion, arithmetic, class counts, the power-of-two sweep with the scales to use
(`sweep`, `recommend`), and the replay engine (`replay`, which reads the trace in a worker process
so that a hostile file cannot crash or hang Python). This package adds a `Format` view of the
format properties, the trace recorder for PyTorch loops (`fpscope.record`, imported on its own:
it needs h5py) and, installed with pip, the `fpscope` command (fpscope/bin, `_cli.py`).

    import fpscope
    fpscope.cast(1.2e-7, "fp16")          # (2, 1.1920928955078125e-07, {...flags})
    codes = fpscope.encode(x, "e4m3", profile="cuda", scale=64.0)
    back = fpscope.decode(codes, "e4m3")
    prod = fpscope.apply("mul", codes, codes, fmt="e4m3", profile="cuda")  # rounded once
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ._fpscope import (  # noqa: F401  (re-exported)
    CLASSES,
    VALUE_CLASSES,
    Trace,
    TraceWriter,
    apply,
    binades,
    bucket_histogram,
    cast,
    class_counts,
    class_counts_histogram,
    classify,
    decode,
    default_block_recipes,
    encode,
    flag_inexact,
    flag_invalid,
    flag_overflow,
    flag_underflow,
    format_info,
    formats,
    histogram_binades,
    policy_info,
    profiles,
    recipes,
    recommend,
    roundings,
    sweep,
    tensor_summary,
)
from . import _fpscope


@dataclass(frozen=True)
class Format:
    """A built-in format's properties, all computed by the library: format_info's keys, which
    are `fpscope formats --json`'s."""

    name: str
    bits: int
    exponent_bits: int
    mantissa_bits: int
    bias: int
    min_subnormal: float | None  # None: no subnormals (e8m0)
    min_normal: float
    max_finite: float
    max_finite_bits: int  # the code of max_finite
    epsilon: float
    decimal_digits: float
    binades: float
    emin: int
    emax: int
    has_inf: bool
    has_nan: bool
    has_subnormals: bool
    has_negative_zero: bool
    signed: bool
    nan_codes: int
    finite_codes: int
    storage_bytes: int
    specials: str

    @property
    def dtype(self) -> str:
        """The numpy dtype of this format's codes."""
        return {1: "uint8", 2: "uint16", 4: "uint32"}[self.storage_bytes]

    # The names these fields had before they took the CLI's.
    exp_bits = property(lambda self: self.exponent_bits)
    man_bits = property(lambda self: self.mantissa_bits)
    max = property(lambda self: self.max_finite)
    max_bits = property(lambda self: self.max_finite_bits)
    is_signed = property(lambda self: self.signed)


def format(name: str) -> Format:  # noqa: A001  (the natural name; shadows the builtin here only)
    """The format called `name` (or an alias: "half", "float8_e4m3fn", ...); ValueError if unknown."""
    return Format(**format_info(name))


def _find_cli() -> str:
    """The fpscope binary: $FPSCOPE_BIN, else the one installed with this package (a wheel's
    fpscope/bin), else the build tree this package sits in, else PATH."""
    env = os.environ.get("FPSCOPE_BIN")
    if env:
        return env
    installed = Path(__file__).resolve().parent / "bin" / "fpscope"
    if installed.is_file():
        return str(installed)
    # The package is built into <build>/lib/python/fpscope; the CLI into <build>/tools/fpscope.
    built = Path(__file__).resolve().parents[3] / "tools" / "fpscope" / "fpscope"
    if built.is_file():
        return str(built)
    found = shutil.which("fpscope")
    if found:
        return found
    raise FileNotFoundError("fpscope binary not found: build it or set FPSCOPE_BIN")


def cli(*args: str) -> subprocess.CompletedProcess:
    """Runs the fpscope command with `args`; raises RuntimeError with its stderr on failure."""
    p = subprocess.run([_find_cli(), *map(str, args)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fpscope {' '.join(map(str, args))}: {p.stderr.strip()}")
    return p


def merge(paths, out, *, histograms: bool = False, threads: int = 0) -> dict:
    """Merges the rank traces of one distributed run into one logical trace at `out`, as
    `fpscope trace merge` (docs/replay.md, "Several ranks"): values placed where the shards say
    (histograms=True: the shards' histograms added), written atomically. Returns {"world_size",
    "steps", "incomplete", "left_out"}. Bad traces, shards that do not tile a tensor, a missing
    rank raise ValueError; an output that cannot be written, OSError.
    """
    if isinstance(paths, (str, os.PathLike)) or len(paths) < 2:
        raise ValueError("merge: needs the traces of several ranks")
    return _fpscope._merge([os.fspath(p) for p in paths], os.fspath(out), bool(histograms), threads)


def replay(path, policy: str = "torch", *, format: str | None = None, profile: str | None = None,  # noqa: A002
           rounding: str | None = None, overflow: str | None = None, steps: str | None = None,
           threads: int = 0, top: int = 5, tensors: bool = True, amax_group: str | None = None) -> dict:
    """Replays the trace at `path` through a recipe (see `recipes()` and `fpscope replay --help`).

    `path` may be a list of paths: every rank's trace of one distributed run, replayed as one run
    (docs/replay.md, "Several ranks"); `amax_group` ("tensor", "tp" or "rank") then says over
    which ranks a per-tensor recipe's amax is reduced (default "tensor").

    The result is the `fpscope replay --json` schema (docs/json.md) as a dict, plus "arrays": the
    per-step columns (step, scale, skipped, one count array per class) as NumPy arrays. The trace
    is read in a worker process: a file that crashes or hangs libhdf5 raises ValueError. Bad
    options raise ValueError, as the CLI's usage errors. `tensors=False` keeps only the steps'
    totals (the summary is complete either way).
    """
    if isinstance(path, (list, tuple)):
        if not path:
            raise ValueError("replay: no trace")
        paths = [os.fspath(p) for p in path]
    else:
        paths = [os.fspath(path)]
    return _fpscope._replay(paths, policy, format, profile, rounding, overflow, steps, threads, top, tensors,
                            amax_group)


# ---- Block quantization of GEMM operands (issue 16; fpscope/block_quant.hpp, docs/recipes.md) ----

# Which way each GEMM's operands are blocked: along the GEMM's reduction dimension.
# fprop Y = X W^T reduces over `in` (rows of X and W); dgrad dX = dY W over `out` (rows of dY,
# columns of W); wgrad dW = dY^T X over tokens (columns of dY and X).
GEMM_AXES = {
    "fprop": {"input": "row", "weight": "row"},
    "dgrad": {"grad": "row", "weight": "column"},
    "wgrad": {"grad": "column", "input": "column"},
}


def quantize(x, recipe: str, role: str = "input", axis: str | None = None, *, gemm: str | None = None) -> dict:
    """Quantizes the 2-D operand `x` (a NumPy array; a torch tensor via .numpy()) as `recipe`
    ("mxfp8", "mxfp4:scaling_mode=floor", "nvfp4", "nvfp4:profile=torchao", "fp8-block",
    "deepseek", "te-current", ...: `recipes()`) quantizes GEMM operand `role` ("input", "weight",
    "grad"), blocks along `axis` ("row" or "column"), or along the reduction dimension of `gemm`
    ("fprop", "dgrad", "wgrad"; GEMM_AXES).

    Returns a dict: codes (uint8, x's shape), scales (the block scales' codes: uint8 for E8M0 and
    E4M3, uint32 float32 bits otherwise; one per block), scale_values, dequant_scale (what
    dequantization multiplies a code's value by, per block), tensor_scale (NVFP4's per-tensor
    scale), dequant (float32, x's shape: usable as fake quantization), block_shape, element,
    scale_format, recipe, and stats (per-block statistics and exact class counts)."""
    if gemm is not None:
        if axis is not None:
            raise ValueError("quantize: give axis or gemm, not both")
        if gemm not in GEMM_AXES:
            raise ValueError(f"quantize: unknown gemm {gemm!r} (known: fprop, dgrad, wgrad)")
        if role not in GEMM_AXES[gemm]:
            raise ValueError(f"quantize: {gemm} has no {role} operand (its operands: {', '.join(GEMM_AXES[gemm])})")
        axis = GEMM_AXES[gemm][role]
    import numpy as np
    if not isinstance(x, np.ndarray):
        # A torch tensor (its values, on the CPU), or any array-like.
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)
    return _fpscope._quantize(x, recipe, role, axis or "row")


def _axis_of(what, role, axis, gemm):
    if gemm is None:
        return axis or "row"
    if axis is not None:
        raise ValueError(f"{what}: give axis or gemm, not both")
    if gemm not in GEMM_AXES:
        raise ValueError(f"{what}: unknown gemm {gemm!r} (known: fprop, dgrad, wgrad)")
    if role not in GEMM_AXES[gemm]:
        raise ValueError(f"{what}: {gemm} has no {role} operand (its operands: {', '.join(GEMM_AXES[gemm])})")
    return GEMM_AXES[gemm][role]


def block_stats(x, geometries=None, *, threads: int = 0) -> dict:
    """The compact per-block statistics of the 2-D operand `x` (fpscope/block_stats.hpp,
    docs/recipes.md "Block statistics"): what a trace stores instead of the values and what
    `answer_block_stats` answers a recipe from. `geometries`: (rows, cols) block shapes, by
    default 1x32, 32x1, 1x128, 128x1 and 128x128 (the power-of-two recipes'). Returns a dict:
    shape, finite_amax, thresholds (uint32), geometries (a list of dicts: block, and elements,
    blocks, minima as (uint32 keys, uint64 counts) pairs)."""
    import numpy as np
    if not isinstance(x, np.ndarray):
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float32)
    return _fpscope._block_stats(x, None if geometries is None else [tuple(g) for g in geometries], threads)


def answer_block_stats(stats: dict, recipe: str, role: str = "input", axis: str | None = None, *,
                       gemm: str | None = None) -> dict:
    """`recipe`'s statistics of an operand from its block statistics (`block_stats`, or a
    trace's: Trace.block_stats), without the values. Returns a dict: recipe, element,
    block_shape, low and high (each quantize()["stats"]'s fields but the error statistics:
    lower and upper bounds), exact_fields (name -> whether low == high), and exact (all of
    them). Exact for the power-of-two recipes (docs/recipes.md says which); ValueError where the
    statistics lack the recipe's block shape or cannot answer it (NVFP4's Hadamard transform)."""
    return _fpscope._answer_block_stats(stats, recipe, role, _axis_of("answer_block_stats", role, axis, gemm))


# Columns of recipes_report()'s "lost" grid: every operand x GEMM pair of a Linear layer.
OPERAND_GEMMS = tuple((role, gemm) for role in ("input", "weight", "grad") for gemm in GEMM_AXES if role in GEMM_AXES[gemm])


def recipes_report(path, recipes=None, *, step: int | None = None, keep_bf16: float | None = None) -> dict:
    """`fpscope recipes TRACE` on a trace of GEMM operands (docs/trace.md, "GEMM operands";
    recorded with fpscope.record's Recorder.watch): every operand of one step with raw values or
    block statistics (answered from those: lower bounds in the fields, "exact" and "high" say
    where they are bounds; "unanswered" where they cannot answer) quantized under each GEMM it feeds (role and blocks along the GEMM's reduction dimension,
    GEMM_AXES) by each recipe (default: default_block_recipes()).

    step: a step index (default: the last step with operands with values or block statistics). keep_bf16: a budget, the
    fraction of an operand's nonzero elements a layer may lose in any GEMM before it is kept in
    BF16 (None: no keep lists).

    Returns the `--json` document as a dict (docs/recipes.md): trace, step, recipes, layers,
    operands (per layer x role x GEMM, the statistics under each recipe), summary (per recipe:
    elements lost over the step, SQNR, layers worst first, keep_bf16; the recipes ranked least
    lossy first; the best recipe per layer), plus "arrays": "lost" and "sqnr_db", NumPy arrays
    (recipes x layers x len(OPERAND_GEMMS)), NaN where an operand was not recorded. The trace is
    read in a worker process (a hostile file raises ValueError, never a crash); bad options
    raise ValueError."""
    import numpy as np

    if isinstance(path, (list, tuple)):
        raise ValueError("recipes_report: one trace (merge rank traces first: fpscope.merge)")
    specs = default_block_recipes() if recipes is None else [recipes] if isinstance(recipes, str) else list(recipes)
    if not specs or not all(isinstance(r, str) for r in specs):
        raise ValueError(f"recipes: a recipe or a non-empty list of recipes, not {recipes!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0):
        raise ValueError(f"step: a step index >= 0 (or None), not {step!r}")
    if keep_bf16 is not None and (isinstance(keep_bf16, bool) or not isinstance(keep_bf16, (int, float))
                                  or not 0 <= keep_bf16 <= 1):
        raise ValueError(f"keep_bf16: a fraction in [0, 1] (or None), not {keep_bf16!r}")
    d = json.loads(_fpscope._recipes_report(os.fspath(path), specs, -1 if step is None else int(step),
                                            -1.0 if keep_bf16 is None else float(keep_bf16)))
    shape = (len(specs), len(d["layers"]), len(OPERAND_GEMMS))
    lost, sqnr = np.full(shape, np.nan), np.full(shape, np.nan)
    for op in d["operands"]:
        at = (d["layers"].index(op["layer"]), OPERAND_GEMMS.index((op["role"], op["gemm"])))
        for k, r in enumerate(op["results"]):
            # an operand answered from block statistics: the lower bound; unanswerable (no "lost_fraction"): NaN
            lost[(k, *at)] = np.nan if r.get("lost_fraction") is None else r["lost_fraction"]
            sqnr[(k, *at)] = np.nan if r.get("sqnr_db") is None else r["sqnr_db"]
    d["arrays"] = {"lost": lost, "sqnr_db": sqnr}
    return d


# ---- tensor-core GEMMs (issue 17; fpscope/mma.hpp, models of MMA-Sim) -------------------------
from ._fpscope import mma_architectures, mma_info, mma_instructions  # noqa: E402,F401


def _mma_operand(x, name: str):
    """A float array as C-contiguous float32, refusing what float32 cannot hold exactly."""
    import numpy as np

    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a float16/float32/float64 array, got {x.dtype}")
    y = np.ascontiguousarray(x, dtype=np.float32)
    if x.dtype.itemsize > 4 and not np.array_equal(y.astype(x.dtype), x, equal_nan=True):
        raise ValueError(f"{name}: holds values that are not float32 values")
    return y


def _mma_scale(x, name: str):
    import numpy as np

    if x is None:
        return None
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"{name}: expected UE8M0 codes as uint8, got {x.dtype}")
    return np.ascontiguousarray(x)


def gemm(a, b, c=None, *, arch: str, inst: str, promote: int = 0, threads: int = 0, a_scale=None, b_scale=None):
    """D = a @ b + c as a GPU kernel computes it with the tensor-core instruction `inst` of `arch`
    (names as MMA-Sim's: `mma_architectures()`, `mma_instructions(arch)`), bit for bit.

    a (m x k) and b (k x n) hold values of the instruction's input types, c (m x n, default +0)
    values of its C type, each exactly (else ValueError naming the first that is not). The K loop
    runs the instruction's depth at a time, each D the next C; `promote` > 0 adds the partial
    result into a float32 total every `promote` elements of K (DeepSeek-V3's FP8 fix). The
    result is float32, or float16 for an f16 output type (a NaN: the hardware's canonical 0x7FFF).
    Block-scaled instructions (kind::mxf8f6f4) need `a_scale` (m x k/32) and `b_scale` (k/32 x n),
    UE8M0 codes (uint8, 2^(code - 127)). Any other (not AMD's) takes DeepSeek-V3's 1x128 recipe
    as float32 `a_scale` (m x ceil(k/128)) and `b_scale` (ceil(k/128) x ceil(n/128), one per 128 x
    128 tile of b): each K-block of 128 from a zero accumulator, then added to the float32 total
    as fma(float32(sa * sb), block result, total) (DeepGEMM's promotion).
    """
    import numpy as np

    info = mma_info(arch, inst)
    if isinstance(promote, bool) or not isinstance(promote, (int, np.integer)) or promote < 0:
        raise ValueError(f"promote: expected a non-negative integer, got {promote!r}")
    cc = None if c is None else _mma_operand(c, "c")
    if info["block"] == 0 and (a_scale is not None or b_scale is not None):  # the 1x128 recipe
        if a_scale is None or b_scale is None:
            raise ValueError("1x128 scaling needs both a_scale and b_scale")
        if np.asarray(a_scale).dtype == np.uint8 or np.asarray(b_scale).dtype == np.uint8:
            raise ValueError(f"{inst} takes no scales of its own (UE8M0/UE4M3 codes); DeepSeek-V3's "
                             "1x128 / 128x128 scales are float32")
        d = _fpscope._gemm(_mma_operand(a, "a"), _mma_operand(b, "b"), cc, arch, inst, int(promote), threads,
                           None, None, _mma_operand(a_scale, "a_scale"), _mma_operand(b_scale, "b_scale"))
    else:
        d = _fpscope._gemm(_mma_operand(a, "a"), _mma_operand(b, "b"), cc, arch, inst, int(promote), threads,
                           _mma_scale(a_scale, "a_scale"), _mma_scale(b_scale, "b_scale"))
    if info["d"] == "fp16":
        return encode(d, "fp16", profile="cuda").view(np.float16)  # exact; NaN -> 0x7FFF
    return d


def gemm_k_sweep(a, b, c=None, *, arch: str, inst: str, ks, promote: int = 0, threads: int = 0, a_scale=None,
                 b_scale=None):
    """The error against K (`fpscope gemm --k-sweep`): for each depth K of `ks` (1..k), the GEMM of
    a's first K columns and b's first K rows (+ c) as gemm() computes it, measured against the
    exact product: a list of dicts {k, checked, undefined_errors, inexact, max_abs_rel_error,
    mean_abs_rel_error, max_abs_ulp_error}. Arguments as gemm()'s; scales are for the whole k."""
    import numpy as np

    info = mma_info(arch, inst)
    if isinstance(promote, bool) or not isinstance(promote, (int, np.integer)) or promote < 0:
        raise ValueError(f"promote: expected a non-negative integer, got {promote!r}")
    ks = [int(x) for x in ks]
    if not ks or any(x < 1 for x in ks):
        raise ValueError(f"ks: expected depths of at least 1, got {ks!r}")
    cc = None if c is None else _mma_operand(c, "c")
    fine = info["block"] == 0 and (a_scale is not None or b_scale is not None)
    if fine and (a_scale is None or b_scale is None):
        raise ValueError("1x128 scaling needs both a_scale and b_scale")
    scales = ((None, None, _mma_operand(a_scale, "a_scale"), _mma_operand(b_scale, "b_scale")) if fine else
              (_mma_scale(a_scale, "a_scale"), _mma_scale(b_scale, "b_scale"), None, None))
    return _fpscope._gemm_k_sweep(_mma_operand(a, "a"), _mma_operand(b, "b"), cc, arch, inst, ks, int(promote),
                                  threads, *scales)


def mma(a, b, c=None, *, arch: str, inst: str, a_scale=None, b_scale=None):
    """One tensor-core instruction: a (m x k), b (k x n), c (m x n) of the instruction's shape;
    the same result as gemm() on that one tile."""
    import numpy as np

    info = mma_info(arch, inst)
    want = {"a": (info["m"], info["k"]), "b": (info["k"], info["n"]), "c": (info["m"], info["n"])}
    for name, x in (("a", a), ("b", b), ("c", c)):
        if x is not None and np.shape(x) != want[name]:
            raise ValueError(f"{name}: {inst} takes a {want[name][0]} x {want[name][1]} {name}, got shape {np.shape(x)}")
    return gemm(a, b, c, arch=arch, inst=inst, threads=1, a_scale=a_scale, b_scale=b_scale)
