"""fpscope replay end to end on traces written here with h5py (so the reader is checked against
another writer of docs/trace.md). Scripted gradients make each policy's trajectory follow from
the upstream algorithm, derived in the comments; counts are checked against ml_dtypes casts."""
import math
import os
import pathlib
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import assert_nothing_left, assert_one_line_error, float32_tensor_attrs

h5py = pytest.importorskip("h5py")
ml = pytest.importorskip("ml_dtypes")

CLASSES = ["zero", "underflow", "subnormal", "normal", "overflow", "nonfinite"]


def bucket_keys(x):
    """docs/hist.md's bucket key of each float32 value, in numpy."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    t = (b << 9) & 0xFFFFFFFF
    run = np.zeros_like(t)
    alive = np.ones_like(t)
    for i in range(24):  # leading ones of the top-aligned fraction
        alive &= (t >> (31 - i)) & 1
        run += alive
    after = (((t << run) & 0xFFFFFFFF) << 1) & 0xFFFFFFFF
    inexact = (((after << 1) & 0xFFFFFFFF) != 0).astype(np.uint64)
    return ((b >> 16) & 0xFF80) | (run << 2) | ((after >> 30) & 2) | inexact


def write_trace(path, steps, raw=True, hist=False, complete=True, chunk=None):
    """steps: list of {name: float32 array}; writes docs/trace.md v1 with h5py (values in chunks of
    `chunk` through shuffle + gzip, as the recorder writes them, when given)."""
    with h5py.File(path, "w") as f:
        f.attrs["fpscope_trace_version"] = np.int32(1)
        f.attrs["producer"] = "test_replay.py"
        f.attrs["model"] = "scripted"
        f.attrs["created"] = "2026-11-25T00:00:00Z"
        for i, tensors in enumerate(steps):
            g = f.create_group(f"steps/{i:08d}")
            g.attrs["step"] = np.int64(i)
            g.attrs["loss"] = 1.0
            g.attrs["lr"] = 0.1
            g.attrs["loss_scale"] = 1.0
            tg = g.create_group("tensors")
            for name, x in tensors.items():
                x = np.asarray(x, np.float32)
                t = tg.create_group(name)
                float32_tensor_attrs(t, x)
                if raw and chunk and x.size:
                    t.create_dataset("values", data=x.reshape(-1), chunks=(min(x.size, chunk),), shuffle=True,
                                     compression="gzip")
                elif raw:
                    t.create_dataset("values", data=x.reshape(-1))
                if hist:
                    keys, counts = np.unique(bucket_keys(x.reshape(-1)), return_counts=True)
                    t.create_dataset("hist_keys", data=keys.astype(np.uint32))
                    t.create_dataset("hist_counts", data=counts.astype(np.uint64))
            if complete or i + 1 < len(steps):
                g.attrs["complete"] = np.int8(1)


def grads(amax, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * amax / 4).astype(np.float32)
    x = np.clip(x, -amax, amax)
    x[0] = amax
    return x


def test_torch_grad_scaler_trajectory(fpscope, tmp):
    # torch.amp.GradScaler, init 2^16, growth 2, backoff 0.5, interval 2, fp16 max 65504 (a value
    # overflows when |g| * S >= 65520, the midpoint to 2^16 that rounds up to inf):
    #   step 0: S = 2^16, amax 1.5 -> 98304 overflows: skip, S -> 2^15, tracker 0
    #   step 1: S = 2^15, amax 1.5 -> 49152 fits: tracker 1
    #   step 2: S = 2^15, amax 1.0 -> 32768 fits: tracker 2 == interval: S -> 2^16, tracker 0
    #   step 3: S = 2^16, amax 1.0 -> 65536 overflows: skip, S -> 2^15
    #   step 4: S = 2^15, amax 0.5 fits: tracker 1
    path = tmp / "t.h5"
    write_trace(path, [{"w": grads(a, seed=i), "b": grads(1e-3, 50, seed=9)} for i, a in enumerate([1.5, 1.5, 1.0, 1.0, 0.5])])
    out = fpscope.json("replay", path, "-P", "torch:interval=2", "--json")
    assert [s["scale"] for s in out["steps"]] == [2.0 ** 16, 2.0 ** 15, 2.0 ** 15, 2.0 ** 16, 2.0 ** 15]
    assert [s["skipped"] for s in out["steps"]] == [True, False, False, True, False]
    assert out["summary"]["skipped"] == [0, 3]
    assert out["summary"]["skip_causes"] == {"w": 2}
    # Counts: the tensor w at step 0, against ml_dtypes' float16 cast of fl32(x * S).
    w = out["steps"][0]["tensors"][1]
    assert w["name"] == "w"
    x = grads(1.5, seed=0)
    with np.errstate(over="ignore"):
        q = (x * np.float32(2.0 ** 16)).astype(np.float16).astype(np.float64)
    counts = {c: w[c] for c in CLASSES}
    want_over = int((~np.isfinite(q)).sum())
    assert counts["overflow"] == want_over > 0
    assert counts["underflow"] == int(((q == 0) & (x != 0)).sum())
    assert counts["subnormal"] == int(((q != 0) & np.isfinite(q) & (np.abs(q) < 2.0 ** -14)).sum())


def test_static_scale_never_skips_but_reports(fpscope, tmp):
    path = tmp / "s.h5"
    write_trace(path, [{"w": grads(a, seed=i)} for i, a in enumerate([0.01, 2.0, 0.01])])
    out = fpscope.json("replay", path, "-P", "static:65536", "--json")
    assert [s["skipped"] for s in out["steps"]] == [False] * 3
    assert [s["tensors"][0]["overflow"] > 0 for s in out["steps"]] == [False, True, False]
    assert all(s["scale"] == 65536 for s in out["steps"])


def test_hist_only_trace_replays_like_the_raw_one(fpscope, tmp):
    steps = [{"w": grads(a, 5000, seed=i), "tiny": grads(1e-6, 300, seed=i + 10)} for i, a in enumerate([3.0, 0.7, 2.5, 0.1])]
    write_trace(tmp / "raw.h5", steps, raw=True)
    write_trace(tmp / "hist.h5", steps, raw=False, hist=True)
    for policy in ("torch:interval=1", "static:1024", "deepspeed"):
        a = fpscope.json("replay", tmp / "raw.h5", "-P", policy, "--json")
        b = fpscope.json("replay", tmp / "hist.h5", "-P", policy, "--json")
        assert a["steps"] == b["steps"], policy
        assert b["summary"]["exact"] is True


def test_te_current_and_delayed(fpscope, tmp):
    amaxes = [2.0, 0.5, 8.0]
    path = tmp / "te.h5"
    write_trace(path, [{"w": grads(a, seed=i)} for i, a in enumerate(amaxes)])
    cur = fpscope.json("replay", path, "-P", "te-current", "--json")
    # Current scaling: S = fp8_max / amax (e5m2 under HYBRID: 57344), in float32.
    assert [s["tensors"][0]["scale"] for s in cur["steps"]] == [float(np.float32(57344) / np.float32(a)) for a in amaxes]
    assert all(s["tensors"][0]["overflow"] == 0 for s in cur["steps"])
    delayed = fpscope.json("replay", path, "-P", "te-delayed:history=2", "--json")
    # Delayed: step 0 uses the initial scale 1; step 1 uses 57344/2 (history max of step 0's amax).
    scales = [s["tensors"][0]["scale"] for s in delayed["steps"]]
    assert scales[0] == 1 and scales[1] == pytest.approx(57344 / 2.0)
    # Step 2's amax 8 at step 1's scale 57344/0.5 ... the history window max is 2 -> 28672: 8 * 28672 overflows.
    assert delayed["steps"][2]["tensors"][0]["overflow"] > 0


def test_mx_counts_against_ml_dtypes(fpscope, tmp):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(32 * 40) * np.exp2(rng.integers(-20, 10, 32 * 40))).astype(np.float32)
    write_trace(tmp / "mx.h5", [{"w": x.reshape(40, 32)}])
    out = fpscope.json("replay", tmp / "mx.h5", "-P", "mx", "--json")
    t = out["steps"][0]["tensors"][0]
    want = dict.fromkeys(CLASSES, 0)
    for blk in x.reshape(-1, 32):
        amax = float(np.abs(blk).max())
        e = max(-127, math.floor(math.log2(amax)) - 8) if amax > 0 else -127  # OCP MX: floor(log2 amax) - emax(e4m3)
        y = (blk.astype(np.float64) * 2.0 ** -e).astype(np.float32)
        q = y.astype(ml.float8_e4m3fn).astype(np.float64)
        for xv, qv in zip(blk, q):
            if xv == 0:
                want["zero"] += 1
            elif not np.isfinite(qv):
                want["overflow"] += 1
            elif qv == 0:
                want["underflow"] += 1
            elif abs(qv) < 2.0 ** -6:
                want["subnormal"] += 1
            else:
                want["normal"] += 1
    assert {c: t[c] for c in CLASSES} == want


def test_threads_count_chunks_exactly(fpscope, tmp):
    """Replay inflates and counts storage chunks on several threads (trace_reader::values_parallel):
    the counts of multi-chunk tensors, partial last chunks and odd values must match numpy's fp16
    cast at the static scale, under any thread count."""
    rng = np.random.default_rng(9)
    steps = []
    for i in range(3):
        tensors = {}
        for k, n in enumerate([10_000, 2_501, 1, 0, 7_777]):
            x = (rng.standard_normal(n) * np.exp2(rng.integers(-40, 20, n))).astype(np.float32)
            if n > 10:
                x[:4] = [0, np.inf, np.nan, -0.0]
            tensors[f"layer{k}"] = x
        steps.append(tensors)
    write_trace(tmp / "chunks.h5", steps, chunk=1000)
    scale = 2.0 ** 10
    outs = [fpscope.json("replay", tmp / "chunks.h5", "-P", f"static:{scale:g}", "--json", "-j", str(j)) for j in (1, 2, 3)]
    assert outs[0]["steps"] == outs[1]["steps"] == outs[2]["steps"]
    for step, got in zip(steps, outs[0]["steps"]):
        for t in got["tensors"]:
            x = step[t["name"]]
            y = (x * np.float32(scale)).astype(np.float32)
            with np.errstate(over="ignore"):
                q = y.astype(np.float16)
            fin = np.isfinite(x)
            want = {"zero": int((x == 0).sum()), "nonfinite": int((~fin).sum())}
            live = fin & (x != 0)
            want["overflow"] = int((live & ~np.isfinite(q)).sum())
            want["underflow"] = int((live & (q == 0)).sum())
            want["subnormal"] = int((live & (q != 0) & (np.abs(q) < 2.0 ** -14)).sum())
            want["normal"] = int(live.sum()) - want["overflow"] - want["underflow"] - want["subnormal"]
            assert {c: t[c] for c in CLASSES} == want, t["name"]


def test_text_plot_csv_and_steps(fpscope, tmp):
    path = tmp / "p.h5"
    write_trace(path, [{"w": grads(a, seed=i)} for i, a in enumerate([1.5, 0.1, 0.1, 1.5, 0.1, 0.1])])
    text = fpscope.ok("replay", path, "-P", "torch:interval=2")
    assert "SKIPPED" in text and "steps replayed" in text and "tensors that caused skips" in text
    fpscope.ok("replay", path, "--plot", tmp / "r.svg")
    assert ET.parse(tmp / "r.svg").getroot().tag.endswith("svg")
    csv = fpscope.ok("replay", path, "--csv").splitlines()
    assert csv[0].startswith("step,tensor,scale,skipped") and len(csv) == 1 + 6
    part = fpscope.json("replay", path, "--steps", "2:3", "--json")
    assert [s["step"] for s in part["steps"]] == [2, 3]


def test_incomplete_last_step_is_noted(fpscope, tmp):
    path = tmp / "cut.h5"
    write_trace(path, [{"w": grads(0.1, seed=i)} for i in range(4)], complete=False)
    out = fpscope.json("replay", path, "--json")
    assert len(out["steps"]) == 3 and len(out["summary"]["incomplete_steps"]) == 1


def test_bad_input(fpscope, tmp):
    (tmp / "x.h5").write_text("not hdf5")
    assert_one_line_error(fpscope.run("replay", tmp / "x.h5"), "not an HDF5 file", status=1)
    path = tmp / "ok.h5"
    write_trace(path, [{"w": grads(0.1)}], raw=False, hist=True)
    assert_one_line_error(fpscope.run("replay", path, "-P", "mx"), "needs raw values", status=1)
    assert_one_line_error(fpscope.run("replay", path, "-P", "adam"), "unknown policy", status=2)
    assert_one_line_error(fpscope.run("replay", path, "--steps", "x"), "--steps", status=2)
    assert_one_line_error(fpscope.run("replay", path, "-P", "te-delayed:algo=mean"), "algo", status=2)
    with h5py.File(path, "r+") as f:
        f.attrs["fpscope_trace_version"] = np.int32(7)
    assert_one_line_error(fpscope.run("replay", path), "version 7", status=1)


CORPUS = pathlib.Path(__file__).resolve().parents[1] / "trace" / "corpus"
HANG = CORPUS / "hdf5-hang-vlen-heap.h5"  # libhdf5 loops forever on it (tests/record/make_hang_trace.py)
LM_CHAR = pathlib.Path(__file__).resolve().parents[2] / "datasets" / "traces" / "lm-char.h5"
STALL = {"FPSCOPE_STALL_SECONDS": "2"}


def test_fuzz_corpus_never_crashes_the_command(fpscope):
    """Every file of the trace fuzz corpus (tests/trace/corpus: mutated traces, some of which
    crash libhdf5 itself or make it loop forever) gives a result or a one-line error with status
    1, never a signal or a hang (the stall limit is 2 s here, not the default 60)."""
    files = sorted(CORPUS.iterdir())
    assert len(files) > 10 and HANG in files
    for f in files:
        p = fpscope.run("replay", f, "-q", "--json", env=STALL)
        assert p.returncode in (0, 1), (f.name, p.returncode, p.stderr)
        if p.returncode == 1:
            assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith("fpscope: error: "), (f.name, p.stderr)
            assert p.stdout == ""
        if f.name.startswith("hdf5-hang-"):
            assert "made no progress" in p.stderr, (f.name, p.stderr)


def children_of(pid):
    """The pids whose parent is pid (from /proc)."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if d.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def running_with(path):
    """The live (not zombie) processes whose command line names path."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        try:
            if str(path).encode() in (d / "cmdline").read_bytes() and " Z " not in (d / "stat").read_text():
                out.append(int(d.name))
        except OSError:
            continue
    return out


def test_hang_is_stopped_by_the_stall_limit(fpscope, tmp):
    # libhdf5 loops forever reading this file's string attributes: replay's watchdog kills the
    # reading process after FPSCOPE_STALL_SECONDS without progress, says so in one line, exit 1;
    # no output (not even the requested plot), no process left.
    trace = tmp / "hang.h5"
    trace.write_bytes(HANG.read_bytes())
    t0 = time.monotonic()
    p = fpscope.run("replay", trace, "--plot", tmp / "out.svg", env=STALL)
    took = time.monotonic() - t0
    assert_one_line_error(p, str(trace), "made no progress", "for 2 s", "corrupt", status=1)
    assert 2 <= took < 10, took
    assert_nothing_left(tmp, "hang.h5")
    assert running_with(trace) == []
    for args in (["--json"], ["--csv"], ["-P", "mx"]):
        p = fpscope.run("replay", trace, *args, env={"FPSCOPE_STALL_SECONDS": "0.5"})
        assert_one_line_error(p, "made no progress", "for 0.5 s", status=1)
    assert_one_line_error(fpscope.run("replay", trace, env={"FPSCOPE_STALL_SECONDS": "soon"}),
                          "FPSCOPE_STALL_SECONDS", "soon", status=2)


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_worker_dies_with_the_command(fpscope, tmp, sig):
    # No stall limit, the worker stuck in libhdf5: killing the command kills it too.
    trace = tmp / "hang.h5"
    trace.write_bytes(HANG.read_bytes())
    proc = subprocess.Popen([fpscope.path, "replay", str(trace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, FPSCOPE_STALL_SECONDS="0"))
    try:
        deadline = time.monotonic() + 10
        while not children_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = children_of(proc.pid)
        assert workers, "no worker process"
        time.sleep(0.3)  # inside libhdf5's loop by now
        assert proc.poll() is None
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == -sig
        deadline = time.monotonic() + 5
        while running_with(trace) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running_with(trace) == [], "the worker outlived the command"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not LM_CHAR.exists(), reason="datasets/traces/lm-char.h5 not present")
def test_honest_trace_never_trips_a_tiny_stall_limit(fpscope):
    # The reading process beats at every step, tensor and slab: a 1 s limit is ample (lm-char:
    # 12 MB, about 1 s to replay in all) and changes nothing in the result.
    tight = fpscope.run("replay", LM_CHAR, "-q", "--json", env={"FPSCOPE_STALL_SECONDS": "1"})
    assert tight.returncode == 0 and tight.stderr == "", tight.stderr
    assert tight.stdout == fpscope.ok("replay", LM_CHAR, "-q", "--json")


# ---- the amax Transformer Engine sees (issue: te-* replayed wrong scales after an inf) ----
#
# TE reduces amax with fmaxf(|x|) over every element (transformer_engine/common/util/
# vectorized_pointwise.h; recipe/current_scaling.cu): one +-inf element makes it inf, a NaN is
# dropped. Delayed scaling (recipe/delayed_scaling.cu kernel_bulk, TE's default fused path) puts
# each step's amax into the history and computes scale = fp8_max * 2^-margin / amax_window only
# when that amax is finite and > 0, else it keeps the old scale (1 at first). Current scaling
# (recipe/recipe_common.cuh compute_scale_from_amax) gives scale 1 for an inf, 0 or NaN amax.
# The expected scales below follow those rules by hand; E5M2's fp8_max is 57344.

INF_STEPS = [2.0, 4.0, 1.0, 8.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # the finite amax of each step
INF_AT = {1: np.inf, 3: -np.inf}  # step 1 holds +inf, step 3 holds -inf


def inf_trace(path, hist=False):
    steps = []
    for i, a in enumerate(INF_STEPS):
        x = grads(a, 200, seed=i)
        if i in INF_AT:
            x[7] = INF_AT[i]
        steps.append({"w": x})
    write_trace(path, steps, raw=not hist, hist=hist)


def te_scales(out):
    return [s["tensors"][0]["scale"] for s in out["steps"]]


@pytest.mark.parametrize("hist", [False, True], ids=["values", "histograms"])
def test_te_delayed_after_an_infinite_element(fpscope, tmp, hist):
    path = tmp / "inf.h5"
    inf_trace(path, hist)
    m = 57344.0
    # max over a 4-step window: after step 0 (amax 2) the scale is 57344/2; steps 1 and 3 are inf,
    # so every window holding one of them (updates after steps 1..6) keeps 28672; the window after
    # step 7 is [1, 1, 1, 1]: 57344. Each step uses the scale of the updates before it.
    got = te_scales(fpscope.json("replay", path, "-P", "te-delayed:amax_history_len=4,amax_compute_algo=max", "--json"))
    assert got == [1.0] + [m / 2] * 7 + [m]
    # most_recent: the inf updates keep the scale, the finite ones set 57344/amax.
    got = te_scales(fpscope.json("replay", path, "-P", "te-delayed:amax_history_len=4,amax_compute_algo=most_recent", "--json"))
    assert got == [1.0, m / 2, m / 2, m / 1, m / 1, m / 1, m / 1, m / 1, m / 1]
    # history 1 under max is most_recent.
    got = te_scales(fpscope.json("replay", path, "-P", "te-delayed:amax_history_len=1", "--json"))
    assert got == [1.0, m / 2, m / 2, m / 1, m / 1, m / 1, m / 1, m / 1, m / 1]
    # The default history (1024) never forgets the inf within these steps.
    got = te_scales(fpscope.json("replay", path, "-P", "te-delayed", "--json"))
    assert got == [1.0] + [m / 2] * 8


@pytest.mark.parametrize("hist", [False, True], ids=["values", "histograms"])
def test_te_current_after_an_infinite_element(fpscope, tmp, hist):
    path = tmp / "inf.h5"
    inf_trace(path, hist)
    want = [1.0 if i in INF_AT else float(np.float32(57344) / np.float32(a)) for i, a in enumerate(INF_STEPS)]
    assert te_scales(fpscope.json("replay", path, "-P", "te-current", "--json")) == want
    # power_2_scale: the float32 scale's mantissa cleared (1 stays 1).
    pow2 = [float((np.array([w], np.float32).view(np.uint32) & np.uint32(0xFF800000)).view(np.float32)[0]) for w in want]
    assert te_scales(fpscope.json("replay", path, "-P", "te-current:pow2", "--json")) == pow2


def test_te_nan_elements_are_ignored_as_fmaxf_does(fpscope, tmp):
    # A NaN element leaves TE's amax at the largest finite |x|: the scales are those of the same
    # trace without the NaN.
    clean, nan = [], []
    for i, a in enumerate([2.0, 4.0, 0.5]):
        x = grads(a, 100, seed=i)
        clean.append({"w": x.copy()})
        x[3] = np.nan
        nan.append({"w": x})
    write_trace(tmp / "clean.h5", clean)
    write_trace(tmp / "nan.h5", nan)
    for policy in ("te-delayed:amax_history_len=2", "te-current", "te-current:pow2"):
        a = te_scales(fpscope.json("replay", tmp / "clean.h5", "-P", policy, "--json"))
        b = te_scales(fpscope.json("replay", tmp / "nan.h5", "-P", policy, "--json"))
        assert a == b, policy
    # and those are 57344 / amax of the earlier step (delayed) and of this step (current).
    assert te_scales(fpscope.json("replay", tmp / "nan.h5", "-P", "te-current", "--json")) == [
        float(np.float32(57344) / np.float32(a)) for a in [2.0, 4.0, 0.5]]


def test_mx_element_format_fp16(fpscope, tmp):
    # Any signed format is an MX element format: its facts come from the format (replay -P mx -f
    # fp16 used to fail with "no known MX element format"). fp16's emax 15: a block of amax 1 gets
    # the shared exponent 0 - 15, so its elements are multiplied by 2^15 and stay normal.
    x = np.full(64, 1.0, np.float32)
    write_trace(tmp / "m.h5", [{"w": x}])
    for mode in ("floor", "even", "ceil", "rceil"):
        out = fpscope.json("replay", tmp / "m.h5", "-P", f"mx:scaling_mode={mode}", "-f", "fp16", "--json")
        t = out["steps"][0]["tensors"][0]
        assert t["normal"] == 64 and t["scale"] == 2.0 ** 15, (mode, t)


def test_histogram_steps_cost_buckets_not_values(fpscope, tmp):
    # A histogram-only step of 2^22 equal values is one bucket: replaying it reads no values.
    x = np.full(1 << 22, 0.5, np.float32)
    write_trace(tmp / "h.h5", [{"w": x}], raw=False, hist=True)
    out = fpscope.json("replay", tmp / "h.h5", "-P", "static:1", "--json")
    assert out["steps"][0]["normal"] == 1 << 22 and out["summary"]["exact"] is True


def test_mx_block_with_an_infinite_element(fpscope, tmp):
    # One block of 31 ones and an inf. torchao's modes reduce the block amax with torch.amax (the
    # inf wins): the E8M0 scale is NaN and the whole block is lost (the ones count as overflow).
    # TE's rceil reduces with fmaxf (inf stays) and float_to_e8m0 saturates inf to 0xFE: scale
    # 2^127, by which the ones become 2^-127, far below e4m3's smallest subnormal: underflow.
    x = np.ones(32, np.float32)
    x[0] = np.inf
    write_trace(tmp / "b.h5", [{"w": x}])
    floor = fpscope.json("replay", tmp / "b.h5", "-P", "mx:scaling_mode=floor", "--json")["steps"][0]["tensors"][0]
    assert (floor["nonfinite"], floor["overflow"], floor["underflow"]) == (1, 31, 0)
    rceil = fpscope.json("replay", tmp / "b.h5", "-P", "mx:scaling_mode=rceil", "--json")["steps"][0]["tensors"][0]
    assert (rceil["nonfinite"], rceil["overflow"], rceil["underflow"]) == (1, 0, 31)
    assert rceil["scale"] == 2.0 ** -127
