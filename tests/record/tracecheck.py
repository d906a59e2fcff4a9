"""An independent checker of fpscope trace files (docs/trace.md, version 1), for the record tests.

Nothing here comes from the recorder (tools/record/fpscope_record.py): the bucket key is
computed again, per element in plain Python integers (key_of) and vectorised a different way
(keys_of: the run of ones bit by bit), and every rule of the format is checked from the text
of docs/trace.md.
"""

import math
import re

import h5py
import numpy as np

DTYPES = {"float32": "<f4", "float16": "<u2", "bfloat16": "<u2", "float8_e4m3fn": "|u1", "float8_e5m2": "|u1"}
ROOT_ATTRS = {"fpscope_trace_version", "producer", "model", "created"}
# Minor version 1 ("Multi-rank traces"): the minor version itself, then optional rank layout attributes.
ROOT_MINOR1 = {"fpscope_trace_minor", "rank", "world_size", "dp_rank", "dp_size", "tp_rank", "tp_size", "pp_rank", "pp_size"}
SHARD_FLAT = {"logical_name", "logical_shape", "shard_offset", "shard_length"}
SHARD_SPLIT = {"logical_name", "logical_shape", "split_dim", "split_index", "split_count"}
STEP_ATTRS = {"step", "loss", "lr", "loss_scale", "complete"}
TENSOR_ATTRS = {"dtype", "shape", "count", "amax", "zeros", "infs", "nans"}
# Minor version 2 ("GEMM operands"): a tensor's role, its layer and its 2-D GEMM shape, together.
OPERAND = {"role", "layer", "gemm_shape"}
ROLES = ("input", "weight", "grad", "wgrad")
COUNT_ATTRS = ("count", "zeros", "infs", "nans")


def key_of(bits):
    """The bucket key of one float32 bit pattern (a Python int), per docs/hist.md, by hand."""
    fraction = bits & 0x7FFFFF
    run = 0
    while run < 23 and fraction >> (22 - run) & 1:  # leading ones of the 23-bit fraction
        run += 1
    rest = 23 - run - 1  # bits after the terminating zero (none if the run is all 23)
    if rest >= 0:
        b = fraction >> (rest - 1) & 1 if rest >= 1 else 0  # the bit after the zero
        below = fraction & ((1 << max(rest - 1, 0)) - 1) if rest >= 1 else 0
    else:
        b, below = 0, 0
    return (bits >> 23) << 7 | run << 2 | b << 1 | (below != 0)


def keys_of(x):
    """key_of for a float32 array, vectorised: the run found bit by bit (not by counting zeros)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.int64)
    fraction = bits & 0x7FFFFF
    run = np.zeros_like(bits)
    alive = np.ones(bits.shape, dtype=bool)
    for i in range(23):
        alive &= (fraction >> (22 - i) & 1) == 1
        run += alive
    rest = 22 - run  # bits after the terminating zero; -1 when the run is 23
    shift = np.maximum(rest - 1, 0)
    b = np.where(rest >= 1, fraction >> shift & 1, 0)
    below = np.where(rest >= 1, fraction & ((np.int64(1) << shift) - 1), 0)
    return ((bits >> 23) << 7 | run << 2 | b << 1 | (below != 0)).astype(np.uint32)


def histogram_of(x):
    keys, counts = np.unique(keys_of(x), return_counts=True)
    return keys.astype(np.uint32), counts.astype(np.uint64)


def widen(dtype, raw):
    """float32 values of stored elements (float16 via numpy, bfloat16 from the bits by hand)."""
    if dtype == "float32":
        return raw
    if dtype == "float16":
        return raw.view(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    import ml_dtypes

    return raw.view(getattr(ml_dtypes, dtype)).astype(np.float32)


def unescape(link):
    return re.sub(r"%(25|2F)", lambda m: {"25": "%", "2F": "/"}[m.group(1)], link)


BSTATS = {"bstats_shape", "bstats_thresholds", "bstats_geometry", "bstats_lengths", "bstats_keys", "bstats_counts"}


class TraceError(AssertionError):
    pass


def _expect(cond, where, what):
    if not cond:
        raise TraceError(f"{where}: {what}")


def _scalar_attr(obj, name, kind, where):
    """An attribute's value, checking its HDF5 type: kind is 'i1', 'i4', 'i8', 'u8', 'f8' or 'str'."""
    aid = obj.attrs.get_id(name)
    _expect(aid.shape == (), where, f"@{name} is not a scalar")
    value = obj.attrs[name]
    if kind == "str":
        _expect(aid.dtype.kind in "SO" and h5py.check_string_dtype(aid.dtype) is not None, where,
                f"@{name} is not a string ({aid.dtype})")
        if isinstance(value, bytes):
            value = value.decode(h5py.check_string_dtype(aid.dtype).encoding)
    else:
        want = np.dtype(("|" if kind == "i1" else "<") + kind)
        _expect(aid.dtype == want, where, f"@{name} is {aid.dtype}, not {want}")
    return value


def check_tensor(g, where, hist_check=True):
    """Checks one tensor group; returns (name, attrs, {dataset: array}, widened values or None)."""
    extra = set(g.attrs) - TENSOR_ATTRS
    operand = extra & OPERAND
    _expect(operand in (set(), OPERAND), where, f"@role, @layer and @gemm_shape come together, not {sorted(operand)}")
    extra -= OPERAND
    _expect(TENSOR_ATTRS <= set(g.attrs) and extra in (set(), SHARD_FLAT, SHARD_SPLIT), where, f"attributes {sorted(g.attrs)}")
    dtype = _scalar_attr(g, "dtype", "str", where)
    _expect(dtype in DTYPES, where, f"dtype {dtype!r}")
    sid = g.attrs.get_id("shape")
    _expect(sid.dtype == np.dtype("<i8") and len(sid.shape) == 1, where, f"@shape is {sid.dtype} {sid.shape}")
    shape = tuple(int(v) for v in np.asarray(g.attrs["shape"]).reshape(-1))
    attrs = {"dtype": dtype, "shape": shape}
    for k in COUNT_ATTRS:
        attrs[k] = int(_scalar_attr(g, k, "u8", where))
    attrs["amax"] = float(_scalar_attr(g, "amax", "f8", where))
    _expect(attrs["count"] == math.prod(shape), where, f"count {attrs['count']} != prod{shape}")
    if operand:  # docs/trace.md, "GEMM operands": the 2-D view of a Linear operand, (leading dims) x (last dim)
        attrs["role"] = _scalar_attr(g, "role", "str", where)
        attrs["layer"] = _scalar_attr(g, "layer", "str", where)
        _expect(attrs["role"] in ROLES and attrs["layer"], where, f"role {attrs['role']!r} of layer {attrs['layer']!r}")
        gid = g.attrs.get_id("gemm_shape")
        _expect(gid.dtype == np.dtype("<i8") and gid.shape == (2,), where, f"@gemm_shape is {gid.dtype} {gid.shape}")
        gemm = tuple(int(v) for v in g.attrs["gemm_shape"])
        _expect(shape and gemm == (math.prod(shape[:-1]), shape[-1]), where, f"@gemm_shape {gemm} for shape {shape}")
        attrs["gemm_shape"] = gemm
    if extra:  # a shard of a logical tensor, checked from docs/trace.md's words
        attrs["logical_name"] = _scalar_attr(g, "logical_name", "str", where)
        lid = g.attrs.get_id("logical_shape")
        _expect(lid.dtype == np.dtype("<i8") and len(lid.shape) == 1, where, "@logical_shape is not int64[]")
        logical = tuple(int(v) for v in np.asarray(g.attrs["logical_shape"]).reshape(-1))
        attrs["logical_shape"] = logical
        if extra == SHARD_FLAT:
            off, length = (int(_scalar_attr(g, k, "u8", where)) for k in ("shard_offset", "shard_length"))
            _expect(length == attrs["count"] and off + length <= math.prod(logical), where, f"flat shard {off}+{length}")
            attrs["shard"] = ("flat", off)
        else:
            dim, index, parts = (int(_scalar_attr(g, k, "u8", where)) for k in ("split_dim", "split_index", "split_count"))
            _expect(dim < len(logical) and 0 <= index < parts and logical[dim] % parts == 0, where, "split shard")
            _expect(shape == logical[:dim] + (logical[dim] // parts,) + logical[dim + 1:], where, "split shard's shape")
            attrs["shard"] = ("split", dim, index, parts)
    members = set(g.keys())
    bstats = members & BSTATS
    _expect(bstats in (set(), BSTATS), where, f"block statistics datasets {sorted(bstats)}: all six or none")
    members -= BSTATS
    _expect(members in ({"values"}, {"hist_keys", "hist_counts"}, {"values", "hist_keys", "hist_counts"}), where,
            f"members {sorted(members | bstats)}")
    data, w = {}, None
    if bstats:  # docs/trace.md "bstats_*": types, the shape, the lists' lengths, every element counted per geometry
        types = {"bstats_shape": "<u8", "bstats_thresholds": "<u4", "bstats_geometry": "<u4", "bstats_lengths": "<u8",
                 "bstats_keys": "<u4", "bstats_counts": "<u8"}
        b = {}
        for name, t in types.items():
            _expect(g[name].dtype == np.dtype(t) and g[name].ndim == 1, where, f"{name}: {g[name].dtype} {g[name].shape}")
            b[name] = g[name][()]
        geo, lengths = b["bstats_geometry"], b["bstats_lengths"]
        _expect(b["bstats_shape"].size == 2 and int(np.prod(b["bstats_shape"].astype(object))) == attrs["count"], where,
                f"bstats_shape {b['bstats_shape']} for @count {attrs['count']}")
        _expect(int(b["bstats_shape"][1]) == (shape[-1] if shape else 1), where, "bstats_shape's cols != the last dimension")
        _expect(geo.size % 2 == 0 and 1 <= geo.size // 2 <= 64 and lengths.size == 3 * (geo.size // 2), where,
                f"{geo.size} geometry numbers, {lengths.size} lengths")
        _expect(int(lengths.sum()) == b["bstats_keys"].size == b["bstats_counts"].size, where, "bstats list lengths")
        at = 0
        for i in range(geo.size // 2):
            n_el = int(lengths[3 * i])
            _expect(int(b["bstats_counts"][at : at + n_el].sum()) == attrs["count"], where,
                    f"geometry {geo[2 * i]}x{geo[2 * i + 1]}: its elements do not sum to @count")
            at += int(lengths[3 * i : 3 * i + 3].sum())
        data.update(b)
    if "values" in members:
        d = g["values"]
        _expect(d.dtype == np.dtype(DTYPES[dtype]), where, f"values stored as {d.dtype} for dtype {dtype}")
        _expect(d.shape == (attrs["count"],), where, f"values shape {d.shape}")
        if attrs["count"]:
            _expect(d.chunks is not None and len(d.chunks) == 1 and d.chunks[0] <= 1 << 20, where, f"chunks {d.chunks}")
            _expect(d.compression == "gzip" and d.compression_opts == 4 and d.shuffle, where,
                    f"filters {d.compression} {d.compression_opts} shuffle={d.shuffle}")
        else:
            _expect(d.chunks is None and d.compression is None and not d.shuffle, where, "empty values are filtered")
        raw = d[()]
        data["values"] = raw
        w = widen(dtype, raw)
        finite = w[np.isfinite(w)]
        stats = {"count": w.size, "zeros": int(np.count_nonzero(w == 0)), "infs": int(np.count_nonzero(np.isinf(w))),
                 "nans": int(np.count_nonzero(np.isnan(w))), "amax": float(np.abs(finite).max()) if finite.size else 0.0}
        for k, v in stats.items():
            _expect(attrs[k] == v, where, f"@{k} {attrs[k]} but the values give {v}")
    if "hist_keys" in members:
        k, n = g["hist_keys"], g["hist_counts"]
        _expect(k.dtype == np.dtype("<u4") and n.dtype == np.dtype("<u8"), where, f"hist types {k.dtype} {n.dtype}")
        keys, counts = k[()], n[()]
        _expect(keys.shape == counts.shape and keys.ndim == 1, where, "hist_keys/hist_counts shapes differ")
        _expect(np.all(np.diff(keys.astype(np.int64)) > 0) and np.all(counts > 0), where, "hist not sorted / zeros")
        _expect(keys.size == 0 or int(keys.max()) < 1 << 16, where, "hist key out of range")
        _expect(int(counts.sum()) == attrs["count"], where, f"hist counts sum {int(counts.sum())} != count")
        c = dict(zip(keys.tolist(), counts.tolist()))
        _expect(c.get(0, 0) + c.get(0x8000, 0) == attrs["zeros"], where, "hist zeros != @zeros")
        _expect(c.get(0x7F80, 0) + c.get(0xFF80, 0) == attrs["infs"], where, "hist infs != @infs")
        nans = sum(v for kk, v in c.items() if kk & 0x7F80 == 0x7F80 and kk & 0x7F)
        _expect(nans == attrs["nans"], where, "hist NaNs != @nans")
        finite_keys = [kk & 0x7FFF for kk in c if kk & 0x7F80 != 0x7F80]
        top = max(finite_keys, default=0)
        amax_key = key_of(int(np.float32(attrs["amax"]).view(np.uint32)))
        _expect(np.float32(attrs["amax"]) == attrs["amax"], where, "@amax is not a float32 value")
        _expect(amax_key == top, where, f"@amax {attrs['amax']} is not in the top finite bucket {top:#x}")
        data["hist_keys"], data["hist_counts"] = keys, counts
        if w is not None and hist_check:
            hk, hc = histogram_of(w)
            _expect(np.array_equal(hk, keys) and np.array_equal(hc, counts), where, "hist differs from the values'")
    return attrs, data


def check_trace(f, hist_check=True):
    """Checks an open h5py.File against docs/trace.md; returns {step link: (step attrs, [(name, attrs, data)])}."""
    where = f.filename
    _expect(ROOT_ATTRS <= set(f.attrs) <= ROOT_ATTRS | ROOT_MINOR1, where, f"root attributes {sorted(f.attrs)}")
    _expect(int(_scalar_attr(f, "fpscope_trace_version", "i4", where)) == 1, where, "version")
    if set(f.attrs) & ROOT_MINOR1:  # minor version 1: the writers write it with any of its attributes
        _expect(int(_scalar_attr(f, "fpscope_trace_minor", "i4", where)) in (1, 2), where, "minor version")
    layout = {k: int(_scalar_attr(f, k, "i8", where)) for k in ROOT_MINOR1 - {"fpscope_trace_minor"} if k in f.attrs}
    for r, n in (("rank", "world_size"), ("dp_rank", "dp_size"), ("tp_rank", "tp_size"), ("pp_rank", "pp_size")):
        _expect((r in layout) == (n in layout), where, f"@{r} without @{n} or the reverse")
        if r in layout:
            _expect(0 <= layout[r] < layout[n], where, f"@{r} {layout[r]} of @{n} {layout[n]}")
    if layout:
        _expect("world_size" in layout and layout["world_size"] % math.prod(
            layout.get(f"{a}_size", 1) for a in ("dp", "tp", "pp")) == 0, where, "layout sizes")
    for a in ("producer", "model"):
        _scalar_attr(f, a, "str", where)
    created = _scalar_attr(f, "created", "str", where)
    _expect(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)", created), where, f"@created {created!r}")
    _expect(set(f.keys()) == {"steps"}, where, f"root members {sorted(f.keys())}")
    out = {}
    for link in f["steps"]:
        s = f["steps"][link]
        sw = f"{where} step {link}"
        _expect(re.fullmatch(r"\d{8}", link), sw, "step group name")
        _expect(set(s.attrs) == STEP_ATTRS and set(s.keys()) == {"tensors"}, sw, f"{sorted(s.attrs)} {sorted(s)}")
        sa = {"step": int(_scalar_attr(s, "step", "i8", sw))}
        for a in ("loss", "lr", "loss_scale"):
            sa[a] = float(_scalar_attr(s, a, "f8", sw))
        _expect(sa["step"] == int(link), sw, f"@step {sa['step']}")
        _expect(int(_scalar_attr(s, "complete", "i1", sw)) == 1, sw, "@complete is not 1")
        tensors = []
        for tl in s["tensors"]:
            attrs, data = check_tensor(s["tensors"][tl], f"{sw} tensor {tl}", hist_check)
            tensors.append((unescape(tl), attrs, data))
        out[link] = (sa, tensors)
    return out


def same_step(a, b):
    """Whether two check_trace() entries are identical, bit for bit (NaN == NaN)."""
    (sa, ta), (sb, tb) = a, b
    if {k: repr(v) for k, v in sa.items()} != {k: repr(v) for k, v in sb.items()} or len(ta) != len(tb):
        return False
    for (na, aa, da), (nb, ab, db) in zip(ta, tb):
        if na != nb or {k: repr(v) for k, v in aa.items()} != {k: repr(v) for k, v in ab.items()}:
            return False
        if da.keys() != db.keys() or any(da[k].dtype != db[k].dtype or da[k].tobytes() != db[k].tobytes() for k in da):
            return False
    return True


def digest_step(s):
    """A step group's whole content (attributes, tensor names in order, datasets) as a comparable
    value; much cheaper than check_trace, for checking thousands of crash points."""
    out = [sorted((k, np.asarray(v).tobytes() if not isinstance(v, str) else v) for k, v in s.attrs.items())]
    t = s["tensors"]
    for name in t:
        g = t[name]
        out.append(name)
        out.append(sorted((k, np.asarray(v).tobytes() if not isinstance(v, str) else v) for k, v in g.attrs.items()))
        for d in sorted(g):
            a = g[d][()]
            out.append((d, a.dtype.str, a.tobytes()))
    return out


def digest(f):
    """{step link: digest_step} of an open trace."""
    return {link: digest_step(f["steps"][link]) for link in f["steps"]}
