"""fpscope cast: parsing of VALUEs, the code and its fields, exact values and errors, flags and
neighbours; --json checked with exact rational arithmetic (fractions) and the reference model."""
import math
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from reference import FORMATS, Format, random_floats64


def cast(fpscope, value, fmt, *args):
    rows = fpscope.json("cast", "--to", fmt, *args, "--json", "--", value)
    assert len(rows) == 1
    return rows[0]


def frac(s):
    """An exact decimal string as a Fraction."""
    return Fraction(Decimal(s))


def f32hex(x):
    return float(np.float32(x)).hex()


def test_1_2e_7_to_fp16(fpscope):
    r = cast(fpscope, "1.2e-7", "fp16")
    assert r["bits"] == 2 and r["hex"] == "0x0002"
    assert r["layout"] == "0 | 00000 | 0000000010"
    assert (r["sign"], r["exponent_field"], r["mantissa_field"]) == (0, "00000", "0000000010")
    assert r["class"] == "subnormal"
    assert r["value_exact"] == "0.00000011920928955078125"
    assert r["flags"] == {"inexact": True, "underflow": True, "overflow": False, "invalid": False}
    assert r["parsed_is_exact"] is False and r["input_kind"] == "decimal"
    assert frac(r["parsed_exact"]) == Fraction(1.2e-7)
    assert frac(r["abs_error_exact"]) == Fraction(2 ** -23) - Fraction(1.2e-7)
    assert r["rel_error"] == pytest.approx(float((Fraction(2 ** -23) - Fraction(1.2e-7)) / Fraction(1.2e-7)),
                                           rel=1e-15)
    assert r["below"] == {"bits": 1, "hex": "0x0001", "value": 2 ** -24, "value_exact": "0.000000059604644775390625"}
    assert r["above"]["bits"] == 3 and frac(r["above"]["value_exact"]) == Fraction(3, 2 ** 24)


def test_464_to_e4m3_is_a_tie_to_448(fpscope):
    r = cast(fpscope, "464", "e4m3")
    assert r["hex"] == "0x7e" and r["value"] == 448 and r["layout"] == "0 | 1111 | 110"
    assert r["flags"] == {"inexact": True, "underflow": False, "overflow": False, "invalid": False}
    assert r["abs_error_exact"] == "-16"
    assert r["below"]["value"] == 416 and r["above"] is None  # 0x7f is NaN


@pytest.mark.parametrize("args,code", [((), 0x7F), (("--overflow", "saturate"), 0x7E), (("--profile", "cuda"), 0x7E),
                                       (("--profile", "cuda", "--overflow", "inf"), 0x7F)])
def test_480_to_e4m3_overflows(fpscope, args, code):
    r = cast(fpscope, "480", "e4m3", *args)
    assert r["bits"] == code
    assert r["flags"]["overflow"] and r["flags"]["inexact"]
    assert r["class"] == ("nan" if code == 0x7F else "normal")


# The table of /work/shared/oracles.md (CUDA host, F16C, torch agree): float32 inputs.
ORACLE = [
    # input, fp16, bf16, e4m3 sat, e4m3 nosat, e5m2 sat, e5m2 nosat
    (65520.0, 0x7C00, 0x4780, 0x7E, 0x7F, 0x7B, 0x7C),
    (65519.996, 0x7BFF, 0x4780, 0x7E, 0x7F, 0x7B, 0x7C),
    (464.0, 0x5F40, 0x43E8, 0x7E, 0x7E, 0x5F, 0x5F),
    (480.0, 0x5F80, 0x43F0, 0x7E, 0x7F, 0x60, 0x60),
    (61440.0, 0x7B80, 0x4770, 0x7E, 0x7F, 0x7B, 0x7C),
    (2.0 ** -25, 0x0000, 0x3300, 0x00, 0x00, 0x00, 0x00),
    (float(np.nextafter(np.float32(2.0 ** -25), np.float32(1))), 0x0001, 0x3300, 0x00, 0x00, 0x00, 0x00),
]


@pytest.mark.parametrize("row", ORACLE, ids=[f"{r[0]!r}" for r in ORACLE])
def test_oracle_table(fpscope, row):
    x = f32hex(row[0])
    checks = [("fp16", (), row[1]), ("bf16", (), row[2]), ("e4m3", ("--profile", "cuda"), row[3]),
              ("e4m3", (), row[4]), ("e5m2", ("--profile", "cuda"), row[5]), ("e5m2", (), row[6])]
    for fmt, args, code in checks:
        assert cast(fpscope, x, fmt, *args)["bits"] == code, (fmt, args)


@pytest.mark.parametrize("mode,codes", [
    ("rne", (0x3C00, 0x3C02, 0xBC00)), ("rna", (0x3C01, 0x3C02, 0xBC01)), ("rtz", (0x3C00, 0x3C01, 0xBC00)),
    ("rup", (0x3C01, 0x3C02, 0xBC00)), ("rdn", (0x3C00, 0x3C01, 0xBC01)), ("rto", (0x3C01, 0x3C01, 0xBC01)),
])
def test_rounding_modes_on_ties(fpscope, mode, codes):
    # 1 + 2^-11 and 1 + 3 * 2^-11 are ties in fp16; -(1 + 2^-11) too.
    values = ["0x1.002p0", "0x1.006p0", "-0x1.002p0"]
    rows = fpscope.json("cast", "--to", "fp16", "--rounding", mode, "--json", "--", *values)
    assert tuple(r["bits"] for r in rows) == codes
    assert all(r["rounding"] == mode for r in rows)


def test_stochastic_rounding_is_keyed_and_picks_a_neighbour(fpscope):
    x = "0x1.001p0"  # a quarter of the way from 1 to the next fp16
    vals = [x] * 64
    a = fpscope.json("cast", "--to", "fp16", "-r", "sr", "--seed", "7", "--json", "--", *vals)
    b = fpscope.json("cast", "--to", "fp16", "-r", "sr", "--seed", "7", "--json", "--", *vals)
    c = fpscope.json("cast", "--to", "fp16", "-r", "sr", "--seed", "8", "--json", "--", *vals)
    bits_a = [r["bits"] for r in a]
    assert bits_a == [r["bits"] for r in b]
    assert bits_a != [r["bits"] for r in c]
    assert set(bits_a) == {0x3C00, 0x3C01}
    assert [r["index"] for r in a] == list(range(64))
    assert 4 <= bits_a.count(0x3C01) <= 32  # p = 1/4


def test_hex_float_and_decimal_parsing(fpscope):
    r = cast(fpscope, "0x1.8p-3", "bf16")
    assert r["input_kind"] == "hex_float" and r["parsed"] == 0.1875 and r["parsed_is_exact"]
    assert r["value"] == 0.1875 and r["abs_error_exact"] == "0" and r["rel_error"] == 0
    assert not any(r["flags"].values())
    r = cast(fpscope, "0.1", "bf16")
    assert r["parsed_is_exact"] is False
    assert r["parsed_exact"] == "0.1000000000000000055511151231257827021181583404541015625"
    assert r["hex"] == "0x3dcd"
    r = cast(fpscope, "-2.5", "e2m1")
    assert r["bits"] == 0xC and r["layout"] == "1 | 10 | 0"  # -2 (a tie between -2 and -3: even)
    r = cast(fpscope, "1e400", "fp16")
    assert r["value_exact"] == "inf" and r["parsed_is_exact"] is False


def test_bit_patterns_are_codes_of_the_target_format(fpscope):
    r = cast(fpscope, "0x3c00", "fp16")
    assert r["input_kind"] == "bit_pattern" and r["bits"] == 0x3C00 and r["value"] == 1.0
    assert r["converted"] is False
    r = cast(fpscope, "0x7e", "e4m3")
    assert r["value"] == 448
    r = cast(fpscope, "0x7c01", "fp16")  # a signalling NaN, shown as it is
    assert r["bits"] == 0x7C01 and r["class"] == "nan" and r["value"] is None
    r = cast(fpscope, "0x3c00", "fp16", "--scale", "2")
    assert r["bits"] == 0x4000 and r["converted"] is True
    r = cast(fpscope, "0x7f", "e8m0")
    assert r["value"] == 1.0 and r["layout"] == "01111111" and r["sign"] is None and r["mantissa_field"] == ""


def test_scale(fpscope):
    r = cast(fpscope, "1e-3", "e5m2", "--scale", "1024")
    assert r["scale"] == 1024 and r["scaled"] == 1e-3 * 1024 and r["scale_is_exact"]
    assert r["value"] == 1.0  # 1.024 rounds to 1 in e5m2
    r = cast(fpscope, "0.1", "fp16", "--scale", "3")
    assert r["scale_is_exact"] is False and r["scaled"] == 0.1 * 3
    assert frac(r["abs_error_exact"]) == Fraction(r["value"]) - Fraction(0.1 * 3)


def test_specials(fpscope):
    assert cast(fpscope, "inf", "fp16")["bits"] == 0x7C00
    assert cast(fpscope, "inf", "fp16")["class"] == "infinite"
    assert cast(fpscope, "-inf", "fp16")["bits"] == 0xFC00
    assert cast(fpscope, "nan", "fp16")["bits"] == 0x7E00
    assert cast(fpscope, "nan", "fp16", "--profile", "cuda")["bits"] == 0x7FFF
    assert cast(fpscope, "inf", "e4m3")["bits"] == 0x7F
    assert cast(fpscope, "inf", "e4m3", "--overflow", "saturate")["bits"] == 0x7E
    r = cast(fpscope, "0", "e8m0")
    assert r["bits"] == 0xFF and r["flags"]["invalid"] and r["class"] == "nan"
    r = cast(fpscope, "-0", "fp16")
    assert r["bits"] == 0x8000 and r["class"] == "zero" and r["value_exact"] == "-0"
    assert r["below"]["bits"] == 0x8001 and r["above"]["bits"] == 0x0001
    assert cast(fpscope, "-0", "e4m3fnuz")["bits"] == 0x00


@pytest.mark.parametrize("name", list(FORMATS))
def test_exactness_against_fractions_and_the_reference(fpscope, name):
    f = Format(name)
    xs = np.concatenate([random_floats64(12, seed=len(name)), f.boundary_inputs()[::97][:12]])
    xs = [float(x) for x in xs]
    rows = fpscope.json("cast", "--to", name, "--json", "--", *[x.hex() for x in xs])
    expect = f.encode(np.array(xs))
    values = sorted(set(v for v in (f.decode(c) for c in range(1 << f.bits)) if not math.isnan(v)))
    for x, r, code in zip(xs, rows, expect):
        assert r["parsed"] == x and r["parsed_is_exact"]
        assert r["bits"] == int(code), (x.hex(), r["hex"])
        v = f.decode(r["bits"])
        if math.isnan(v):
            assert r["value_exact"] == "nan" and r["abs_error_exact"] is None
            continue
        if math.isinf(v):
            assert r["value_exact"] == ("inf" if v > 0 else "-inf")
            continue
        assert frac(r["value_exact"]) == Fraction(v)
        assert frac(r["abs_error_exact"]) == Fraction(v) - Fraction(x)
        if x != 0:
            rel = (Fraction(v) - Fraction(x)) / Fraction(x)
            assert abs(Fraction(Decimal(r["rel_error_text"])) - rel) <= abs(rel) * Fraction(1, 10 ** 16)
        i = values.index(v)
        below = values[i - 1] if i > 0 else None
        above = values[i + 1] if i + 1 < len(values) else None
        got_below = r["below"] and (math.inf if r["below"]["value_exact"] == "inf" else -math.inf
                                    if r["below"]["value_exact"] == "-inf" else frac(r["below"]["value_exact"]))
        got_above = r["above"] and (math.inf if r["above"]["value_exact"] == "inf" else -math.inf
                                    if r["above"]["value_exact"] == "-inf" else frac(r["above"]["value_exact"]))
        assert (got_below or None) == (below if below is None else Fraction(below) if math.isfinite(below) else below)
        assert (got_above or None) == (above if above is None else Fraction(above) if math.isfinite(above) else above)


def test_text_output(fpscope):
    out = fpscope.ok("cast", "1.2e-7", "--to", "fp16")
    for label in ["input", "bits", "value", "class", "abs error", "rel error", "flags", "below", "above"]:
        assert f"  {label} " in out, label
    assert "0x0002" in out and "0 | 00000 | 0000000010" in out and "(sign | exponent | mantissa)" in out
    assert "subnormal" in out and "inexact underflow" in out
    assert "0.00000011920928955078125" in out
    assert "\x1b[" not in out
    out = fpscope.ok("cast", "464", "480", "--to", "e4m3")
    assert out.count(" -> e4m3 ") == 2
    assert "0x7e" in out and "0x7f" in out and "overflow" in out


def test_negative_number_without_separator(fpscope):
    rows = fpscope.json("cast", "-1.5", "--to", "fp16", "--json")
    assert rows[0]["bits"] == 0xBE00
