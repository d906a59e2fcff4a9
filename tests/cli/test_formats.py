"""fpscope formats: the table and --json, against formulas from the specifications and against
numpy / ml_dtypes finfo."""
import math
import os
import pty
import subprocess

import numpy as np
import pytest

from reference import FORMATS, Format

KEYS = ["name", "bits", "exponent_bits", "mantissa_bits", "bias", "min_subnormal", "min_normal", "max_finite",
        "epsilon"]
# Every key, as the library's for_each_fact names them (Python's fpscope.format_info has the same).
ALL_KEYS = {"name", "bits", "exponent_bits", "mantissa_bits", "bias", "min_subnormal", "min_normal", "max_finite",
            "max_finite_bits", "epsilon", "decimal_digits", "binades", "emin", "emax", "has_inf", "has_nan",
            "has_subnormals", "has_negative_zero", "signed", "nan_codes", "finite_codes", "storage_bytes", "specials"}


@pytest.fixture(scope="module")
def rows(fpscope):
    return {r["name"]: r for r in fpscope.json("formats", "--json")}


def test_json_is_an_array_of_every_format_in_order(fpscope):
    out = fpscope.json("formats", "--json")
    assert isinstance(out, list)
    assert [r["name"] for r in out] == list(FORMATS)
    for r in out:
        assert set(r) == ALL_KEYS, r["name"]
        for k in KEYS[1:5]:
            assert isinstance(r[k], int), (r["name"], k)
        for k in KEYS[5:]:
            assert r[k] is None or isinstance(r[k], (int, float)), (r["name"], k, r[k])


@pytest.mark.parametrize("name", list(FORMATS))
def test_figures_match_the_specification(rows, name):
    r, f = rows[name], Format(name)
    assert (r["bits"], r["exponent_bits"], r["mantissa_bits"], r["bias"]) == (f.bits, f.e, f.m, f.bias)
    if f.style == "e8m0":
        assert r["min_subnormal"] is None
        assert r["min_normal"] == 2.0 ** -127
        smallest = r["min_normal"]
    else:
        assert r["min_subnormal"] == 2.0 ** (1 - f.bias - f.m)
        assert r["min_normal"] == 2.0 ** (1 - f.bias)
        smallest = r["min_subnormal"]
    assert r["max_finite"] == f.mags[-1]
    assert r["epsilon"] == 2.0 ** -f.m
    assert r["decimal_digits"] == pytest.approx((f.m + 1) * math.log10(2))
    assert r["binades"] == pytest.approx(math.log2(r["max_finite"] / smallest))
    assert r["has_inf"] == (f.style == "ieee")
    nan_codes = sum(math.isnan(f.decode(c)) for c in range(1 << f.bits))
    assert r["nan_codes"] == nan_codes
    assert r["has_nan"] == (nan_codes > 0)
    assert r["has_subnormals"] == (r["min_subnormal"] is not None)
    assert f.decode(r["max_finite_bits"]) == r["max_finite"]
    assert r["finite_codes"] + nan_codes + (2 if r["has_inf"] else 0) == 1 << f.bits


def test_well_known_values(rows):
    assert rows["fp16"]["max_finite"] == 65504
    assert rows["bf16"]["max_finite"] == pytest.approx(3.3895313892515355e38, rel=0)
    assert rows["e4m3"]["max_finite"] == 448
    assert rows["e5m2"]["max_finite"] == 57344
    assert rows["e4m3fnuz"]["max_finite"] == 240
    assert rows["e5m2fnuz"]["max_finite"] == 57344
    assert rows["e2m3"]["max_finite"] == 7.5
    assert rows["e3m2"]["max_finite"] == 28
    assert rows["e2m1"]["max_finite"] == 6
    assert rows["e8m0"]["max_finite"] == 2.0 ** 127
    assert rows["fp16"]["min_subnormal"] == 2.0 ** -24
    assert rows["fp16"]["nan_codes"] == 2046
    assert rows["e4m3"]["nan_codes"] == 2


def test_against_numpy_finfo(rows):
    fi = np.finfo(np.float16)
    r = rows["fp16"]
    assert r["max_finite"] == float(fi.max)
    assert r["min_normal"] == float(fi.smallest_normal)
    assert r["min_subnormal"] == float(fi.smallest_subnormal)
    assert r["epsilon"] == float(fi.eps)


def test_against_ml_dtypes_finfo(rows):
    ml = pytest.importorskip("ml_dtypes")
    names = {"bf16": "bfloat16", "e4m3": "float8_e4m3fn", "e5m2": "float8_e5m2", "e4m3fnuz": "float8_e4m3fnuz",
             "e5m2fnuz": "float8_e5m2fnuz", "e2m3": "float6_e2m3fn", "e3m2": "float6_e3m2fn",
             "e2m1": "float4_e2m1fn", "e8m0": "float8_e8m0fnu"}
    for ours, theirs in names.items():
        fi = ml.finfo(getattr(ml, theirs))
        r = rows[ours]
        assert r["max_finite"] == float(fi.max), ours
        assert r["min_normal"] == float(fi.smallest_normal), ours
        assert r["epsilon"] == float(fi.eps), ours
        if r["min_subnormal"] is not None:
            assert r["min_subnormal"] == float(fi.smallest_subnormal), ours


def test_table(fpscope):
    out = fpscope.ok("formats")
    lines = out.splitlines()
    assert len(lines) == 1 + len(FORMATS)
    for word in ["format", "bits", "bias", "min subnormal", "min normal", "max finite", "epsilon", "digits",
                 "binades", "inf/NaN"]:
        assert word in lines[0]
    for line, name in zip(lines[1:], FORMATS):
        assert line.split()[0] == name
    fp16 = lines[1]
    assert "65504" in fp16 and "2^-24" in fp16 and "2^-14" in fp16 and "2^-10" in fp16 and "2046 NaN" in fp16
    assert "448" in lines[4] and "no inf" in lines[4]
    assert "\x1b[" not in out  # no colour when stdout is not a terminal


def _run_on_tty(binary, *args, env=None):
    master, slave = pty.openpty()
    e = dict(os.environ, TERM="xterm")
    e.pop("NO_COLOR", None)
    e.update(env or {})
    p = subprocess.run([binary, *args], stdout=slave, stderr=subprocess.PIPE, env=e, timeout=60)
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    return p.returncode, b"".join(chunks).decode()


def test_colour_only_on_a_terminal(fpscope):
    rc, out = _run_on_tty(fpscope.path, "formats")
    assert rc == 0 and "\x1b[" in out
    rc, out = _run_on_tty(fpscope.path, "formats", env={"NO_COLOR": "1"})
    assert rc == 0 and "\x1b[" not in out


def test_help_has_examples_and_exit_codes(fpscope):
    top = fpscope.ok("--help")
    assert "Examples:" in top and "Exit status:" in top
    for status in ["0", "1", "2"]:
        assert f"  {status}  " in top
    for cmd in ["formats", "cast", "convert"]:
        assert cmd in top
        assert "Examples:" in fpscope.ok(cmd, "--help")
    assert fpscope.ok("--version").startswith("fpscope ")
