"""fpscope hist end to end. Counts are checked against the way a user computes them today, with
NumPy's float16 and ml_dtypes' bfloat16 / float8 casts (independent implementations), never
against fpscope itself; recommendations against a plain scan over every power of two; then the
formats of the output (JSON, CSV, text, figures) and bad input."""
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import assert_one_line_error, nonempty

ml = pytest.importorskip("ml_dtypes")

DTYPES = {"fp16": np.float16, "bf16": ml.bfloat16, "e4m3": ml.float8_e4m3fn, "e5m2": ml.float8_e5m2}
CLASSES = ["zero", "underflow", "subnormal", "normal", "overflow", "nonfinite"]


def save(tmp, name, a):
    p = tmp / name
    np.save(p, a)
    return p


def numpy_counts(x, fmt, scale):
    """The classes the way a user would count them: scale in float32, cast, compare."""
    x = np.asarray(x)
    dt = DTYPES[fmt]
    info = ml.finfo(dt)
    with np.errstate(all="ignore"):
        if x.dtype == np.float64:
            y = (x * float(scale)).astype(np.float32)  # exact product for a power-of-two scale
        else:
            y = x.astype(np.float32) * np.float32(scale)
        q = y.astype(dt).astype(np.float64)
    finite = np.isfinite(x)
    zero = finite & (x == 0)
    rest = finite & ~zero
    over = rest & ~np.isfinite(q)
    under = rest & (q == 0)
    sub = rest & np.isfinite(q) & (q != 0) & (np.abs(q) < float(info.smallest_normal))
    normal = rest & ~over & ~under & ~sub
    return {"zero": int(zero.sum()), "underflow": int(under.sum()), "subnormal": int(sub.sum()),
            "normal": int(normal.sum()), "overflow": int(over.sum()), "nonfinite": int((~finite).sum())}


def gradients(n=200_000, seed=3):
    """Gradient-like float32: log-normal magnitudes over ~60 binades, zeros, a few non-finite and
    float32 subnormals, and values on fp16's thresholds and ties."""
    rng = np.random.default_rng(seed)
    x = np.exp2(rng.normal(-16, 7, n)).astype(np.float32) * rng.choice([-1, 1], n).astype(np.float32)
    x[rng.random(n) < 0.05] = 0
    x[:8] = [np.inf, -np.inf, np.nan, 1e-40, -1e-44, 2.0 ** -25, 2.0 ** -24 * 1.5, 65520.0]
    return x


def counts_of(result):
    return {c: result[c] for c in CLASSES}


def test_counts_match_numpy_and_ml_dtypes(fpscope, tmp):
    x = gradients()
    f = save(tmp, "g.npy", x)
    out = fpscope.json("hist", f, "-s", "2^-8:2^20,3,0.1,1e-30,2^-120:2^-100:10", "--json", "--errors", "none")
    assert len(out["results"]) == 4 * 35
    for r in out["results"]:
        want = numpy_counts(x, r["format"], r["scale"])
        assert counts_of(r) == want, (r["format"], r["scale"])
        assert r["total"] == x.size
        nzf = sum(r[c] for c in ("underflow", "subnormal", "normal", "overflow"))
        assert r["fraction_of_nonzero_finite"]["underflow"] == pytest.approx(r["underflow"] / nzf)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_input_dtypes(fpscope, tmp, dtype):
    with np.errstate(over="ignore"):
        x = gradients(50_000, seed=4).astype(dtype)
    out = fpscope.json("hist", save(tmp, "g.npy", x), "-s", "2^-4:2^16", "--json", "--errors", "none")
    for r in nonempty(out["results"]):
        assert counts_of(r) == numpy_counts(x, r["format"], r["scale"]), (r["format"], r["scale"])


def test_bf16_codes_with_input_format(fpscope, tmp):
    x = gradients(30_000, seed=5).astype(ml.bfloat16)
    f = save(tmp, "b.npy", x.view(np.uint16))
    out = fpscope.json("hist", f, "--input-format", "bf16", "-f", "fp16,e4m3", "-s", "1,2^10", "--json")
    for r in nonempty(out["results"]):
        assert counts_of(r) == numpy_counts(x.astype(np.float32), r["format"], r["scale"])
    assert out["inputs"][0]["dtype"] == "uint16 codes of bf16"
    p = fpscope.run("hist", f)
    assert_one_line_error(p, "uint16", "--input-format", status=1)


def test_recommendations_from_a_scan_of_every_power_of_two(fpscope, tmp):
    x = gradients(20_000, seed=6)
    f = save(tmp, "g.npy", x)
    for headroom in (0, 1, 3):
        out = fpscope.json("hist", f, "--json", "--headroom", headroom)
        for rec in nonempty(out["recommendations"]):
            fmt = rec["format"]
            scan = {k: numpy_counts(x, fmt, 2.0 ** k) for k in range(-126, 128)}
            top = max(k for k, c in scan.items() if c["overflow"] == 0)
            gs = rec["gradscaler"]
            assert gs["largest_without_overflow_log2"] == top
            assert gs["scale_log2"] == max(-126, top - headroom)
            assert counts_of(gs) == scan[gs["scale_log2"]]
            loss = {k: (c["underflow"] + c["overflow"], c["subnormal"]) for k, c in scan.items()}
            best = min(loss.values())
            tied = [k for k in sorted(loss) if loss[k] == best]
            assert rec["min_loss"]["scale_log2"] == tied[len(tied) // 2]
            assert rec["min_loss"]["tied_log2"] == [tied[0], tied[-1]]
            assert rec["min_loss"]["errors"]["count"] == scan[tied[len(tied) // 2]]["subnormal"] + \
                scan[tied[len(tied) // 2]]["normal"]


def test_error_statistics(fpscope, tmp):
    x = gradients(20_000, seed=8)
    out = fpscope.json("hist", save(tmp, "g.npy", x), "-f", "fp16", "-s", "2^8", "--json")
    e = out["results"][0]["errors"]
    finite = np.isfinite(x) & (x != 0)
    y = x[finite].astype(np.float32) * np.float32(256)
    with np.errstate(over="ignore"):
        q = y.astype(np.float16).astype(np.float64)
    keep = np.isfinite(q) & (q != 0)
    xs, qs = x[finite][keep].astype(np.float64), q[keep] / 256
    rel = np.abs(qs - xs) / np.abs(xs)
    assert e["count"] == keep.sum()
    assert e["mean_rel"] == pytest.approx(rel.mean(), rel=1e-9)
    assert e["max_rel"] == pytest.approx(rel.max(), rel=1e-12)
    assert e["sqnr_db"] == pytest.approx(10 * math.log10((xs ** 2).sum() / ((qs - xs) ** 2).sum()), rel=1e-9)


def test_several_tensors_csv_and_reference_path(fpscope, tmp):
    a, b = gradients(3_000, seed=1), gradients(300_000, seed=2)  # a small one (search) and a large one (buckets)
    fa, fb = save(tmp, "a.npy", a), save(tmp, "b.npy", b)
    args = ["hist", fa, fb, "-f", "fp16,e5m2", "-s", "2^-2,2^6,5", "--json", "--errors", "none"]
    out = fpscope.json(*args)
    for r in nonempty(out["results"]):
        per = {t["input"]: counts_of(t) for t in r["tensors"]}
        assert per[str(fa)] == numpy_counts(a, r["format"], r["scale"])
        assert per[str(fb)] == numpy_counts(b, r["format"], r["scale"])
        assert counts_of(r) == {c: per[str(fa)][c] + per[str(fb)][c] for c in CLASSES}
    ref = fpscope.json(*args, "--reference")
    assert ref["results"] == out["results"] and ref["recommendations"] == out["recommendations"]
    csv = fpscope.ok("hist", fa, fb, "-f", "fp16", "-s", "1,2^4", "--csv").splitlines()
    assert csv[0].startswith("input,format,rounding,on_overflow,profile,scale,total,zero,underflow")
    assert len(csv) == 1 + 2 * 3
    last = dict(zip(csv[0].split(","), csv[-1].split(",")))
    assert last["input"] == "all" and int(last["total"]) == a.size + b.size


def test_saturating_profile_counts_saturation_as_overflow(fpscope, tmp):
    x = np.array([400, 448, 460, 464, 465, 500, 1e6, -1e6, 1, 0], np.float32)
    out = fpscope.json("hist", save(tmp, "s.npy", x), "-f", "e4m3", "-p", "cuda", "--json")
    r = out["results"][0]
    assert r["overflow"] == 4 and r["normal"] == 5 and r["zero"] == 1  # 464 is a tie to 448; 465 up saturates
    assert out["results"][0]["profile"] == "cuda" and r["overflow"] == counts_of(r)["overflow"]


def test_odd_data_is_counted(fpscope, tmp):
    cases = {
        "empty": np.zeros(0, np.float32),
        "zeros": np.zeros(1000, np.float32),
        "nans": np.full(100, np.nan, np.float32),
        "denormals": np.full(100, 1e-40, np.float32),
        "scalar": np.float32(3.5).reshape(()),
    }
    for name, x in cases.items():
        out = fpscope.json("hist", save(tmp, name + ".npy", x), "--json")
        for r in nonempty(out["results"]):
            assert counts_of(r) == numpy_counts(x.reshape(-1), r["format"], r["scale"]), name
        if name in ("empty", "zeros", "nans"):
            assert all(rec["gradscaler"] is None for rec in nonempty(out["recommendations"]))
            assert all(r["fraction_of_nonzero_finite"]["normal"] is None for r in nonempty(out["results"]))
        text = fpscope.ok("hist", tmp / (name + ".npy"))
        assert "fp16 (rounding rne" in text


def test_text_output(fpscope, tmp):
    f = save(tmp, "g.npy", gradients(50_000))
    text = fpscope.ok("hist", f, "-s", "2^10")
    assert "underflow  subnormal" in text and "GradScaler" in text and "fewest lost" in text
    assert "against each format at scale 2^10" in text and "key: · normal" in text
    assert "\x1b[" not in text  # no colour off a terminal
    assert "fp16: |x| < 2.91e-11 vanishes" in text  # 2^-25 / 2^10 = 2^-35


def test_plot_files(fpscope, tmp):
    f = save(tmp, "g.npy", gradients(10_000))
    fpscope.ok("hist", f, "--plot", tmp / "h.svg", "-s", "2^4")
    root = ET.parse(tmp / "h.svg").getroot()
    assert root.tag.endswith("svg")
    fpscope.ok("hist", f, "--plot", tmp / "h.png")
    assert (tmp / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    p = fpscope.run("hist", f, "--plot", tmp / "h.pdf")
    assert_one_line_error(p, ".svg or .png", status=2)
    assert not (tmp / "h.pdf").exists()
    p = fpscope.run("hist", f, "--plot", tmp / "missing" / "h.svg")
    assert_one_line_error(p, "missing", status=1)
    assert not (tmp / "missing").exists()


@pytest.mark.parametrize("args,words,status", [
    (["-s", "0"], ["positive finite"], 2),
    (["-s", "2^200"], ["2^200"], 2),
    (["-s", "2^4:2^1"], ["range"], 2),
    (["-s", "2^1:2^4:0"], ["step"], 2),
    (["-s", "abc"], ["abc"], 2),
    (["-r", "sr"], ["deterministic"], 2),
    (["-f", "e8m0"], ["unsigned"], 2),
    (["-f", "fp17"], ["fp17"], 2),
    (["--json", "--csv"], ["--csv"], 2),
    (["--errors", "some"], ["--errors"], 2),
])
def test_bad_options(fpscope, tmp, args, words, status):
    f = save(tmp, "g.npy", np.ones(4, np.float32))
    assert_one_line_error(fpscope.run("hist", f, *args), *words, status=status)


def test_bad_files(fpscope, tmp):
    (tmp / "text.npy").write_text("not numpy\n")
    assert_one_line_error(fpscope.run("hist", tmp / "text.npy"), "text.npy", status=1)
    assert_one_line_error(fpscope.run("hist", save(tmp, "i.npy", np.ones(3, np.int32))), "i.npy", status=1)
    assert_one_line_error(fpscope.run("hist", tmp / "absent.npy"), "absent.npy", status=2)
    assert_one_line_error(fpscope.run("hist", save(tmp, "u.npy", np.ones(3, np.uint8)), "--input-format", "bf16"),
                          "uint16", status=1)


def test_help_has_examples(fpscope):
    text = fpscope.ok("hist", "--help")
    assert "Examples:" in text and "--scales" in text and "--plot" in text


def test_trace_input_one_row_per_tensor_over_the_steps(fpscope, tmp):
    """A trace is one input per tensor name, its values summed over the steps --steps picks;
    counts against NumPy / ml_dtypes casts of the same values (chunked gzip storage, as the
    recorder writes it)."""
    pytest.importorskip("h5py")
    from test_replay import write_trace

    steps = [{"a": gradients(3000, seed=i), "b": gradients(500, seed=100 + i)} for i in range(4)]
    write_trace(tmp / "t.h5", steps, chunk=1000)
    out = fpscope.json("hist", tmp / "t.h5", "-f", "fp16,e4m3", "-s", "2^-4,1,2^10,3", "--json", "--steps", "1:2")
    assert [i["path"] for i in out["inputs"]] == [f"{tmp / 't.h5'}:a", f"{tmp / 't.h5'}:b"]
    assert [i["total"] for i in out["inputs"]] == [6000, 1000]
    assert out["exact"] is True and out["notes"] == []
    for r in nonempty(out["results"]):
        per = {t["input"].rsplit(":", 1)[1]: t for t in r["tensors"]}
        for name in "ab":
            x = np.concatenate([steps[i][name] for i in (1, 2)])
            assert counts_of(per[name]) == numpy_counts(x, r["format"], r["scale"]), (name, r["format"], r["scale"])


def test_trace_histograms_count_like_values_at_powers_of_two(fpscope, tmp):
    """Histogram-only steps count exactly at power-of-two scales (the same counts as the raw
    trace they came from); elsewhere the output says it is not exact; --reference refuses them."""
    pytest.importorskip("h5py")
    from test_replay import write_trace

    steps = [{"g": gradients(50_000, seed=i)} for i in range(3)]
    for st in steps:  # float32 subnormals have buckets of their own bits: no edges for bf16's boundaries
        st["g"][np.abs(st["g"]) < 2.0 ** -126] = 0
    write_trace(tmp / "raw.h5", steps)
    write_trace(tmp / "hist.h5", steps, raw=False, hist=True)
    args = ["-f", "fp16,bf16,e4m3,e5m2", "-s", "2^-8:2^20:4", "--json"]
    raw, hist = (fpscope.json("hist", tmp / f, *args) for f in ("raw.h5", "hist.h5"))
    assert hist["exact"] is True
    assert [counts_of(r) for r in nonempty(hist["results"])] == [counts_of(r) for r in raw["results"]]
    scales = lambda out: [(r["gradscaler"]["scale"], r["min_loss"]["scale"]) for r in nonempty(out["recommendations"])]
    assert scales(hist) == scales(raw)
    assert any("no error statistics" in n for n in hist["notes"])
    assert all(r["exact"] for r in nonempty(hist["results"]))
    three = fpscope.json("hist", tmp / "hist.h5", "-f", "fp16", "-s", "3,4", "--json")
    assert three["exact"] is False and any("not exact" in n for n in three["notes"])
    assert [r["exact"] for r in three["results"]] == [False, True]  # per row: 3 straddles, 4 does not
    assert_one_line_error(fpscope.run("hist", tmp / "hist.h5", "--reference"), "histogram-only", status=2)
    assert_one_line_error(fpscope.run("hist", tmp / "hist.h5", "--steps", "7:"), "no tensors", status=1)
    np.save(tmp / "x.npy", steps[0]["g"])
    assert_one_line_error(fpscope.run("hist", tmp / "x.npy", "--steps", "1:2"), "not a trace", status=2)


def test_progress_on_a_terminal_only(fpscope, tmp):
    # Issue 20: a long hist shows its progress on stderr when stderr is a terminal, and nowhere
    # else. An input of 64 MiB or more draws the bar at once (smaller ones after a second), so
    # a 68 MB file shows it without a slow test. Both passes draw: the counts, then the errors.
    import os
    import pty
    import subprocess

    x = np.random.default_rng(20).standard_normal(17_000_000).astype(np.float32)
    f = save(tmp, "big.npy", x)
    args = [fpscope.path, "hist", str(f), "-f", "e4m3", "-s", "2^4", "--threads", "1"]

    def on_tty(*extra):
        master, slave = pty.openpty()
        p = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        out = p.stdout.read()
        assert p.wait() == 0
        os.close(master)
        return out.decode(), err.decode()

    out, err = on_tty()
    assert "e4m3" in out
    for label in ("counting [", "errors ["):
        assert label in err, err
    assert "100%" in err and f"{x.size} / {x.size} values" in err, err
    assert err.endswith("\r\x1b[K"), repr(err[-40:])  # the bar erased before the report
    assert on_tty("-q")[1] == ""  # --quiet: none
    p = fpscope.run("hist", f, "-f", "e4m3", "-s", "2^4", "--threads", "1")
    assert p.returncode == 0 and p.stderr == "", p.stderr  # not a terminal: none
