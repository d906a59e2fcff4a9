"""Every subcommand runs the same table of bad and good option values (tests/options_table.py):
a bad value is a usage error (exit 2, one line on stderr naming the option, nothing on stdout),
a good one is accepted. The same table runs through the Python module
(tests/python/test_options.py), and the policies' grammar through replay here."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from options_table import BAD, BAD_POLICIES, GOOD, GOOD_POLICIES  # noqa: E402

h5py = pytest.importorskip("h5py")

USAGE = 2
TRACE = Path(__file__).resolve().parents[2] / "datasets" / "traces" / "synthetic.h5"
RANKS = sorted((Path(__file__).resolve().parents[2] / "datasets" / "traces" / "ranks" / "tp").glob("rank*.h5"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("opts")
    x = d / "x.npy"
    np.save(x, np.linspace(-2, 2, 64, dtype=np.float32))
    codes = d / "codes.npy"
    np.save(codes, np.arange(4, dtype=np.uint16))
    col = d / "col.npy"
    np.save(col, np.ones(64, np.float32))
    # one m16n8k16 tile of fp16 values, for gemm
    ma, mb = d / "ma.npy", d / "mb.npy"
    np.save(ma, np.linspace(-2, 2, 16 * 16, dtype=np.float16).astype(np.float32).reshape(16, 16))
    np.save(mb, np.ones((16, 8), np.float32))
    return {"x": x, "codes": codes, "col": col, "out": d / "out.npy", "dir": d, "ma": ma, "mb": mb}


def commands(i):
    """subcommand -> (arguments, {kind: flag}, {kind: default value}, stdin). The command succeeds
    with the defaults; a test replaces one kind's value."""
    return {
        "cast": (["cast", "0.1"],
                 {"format": "--to", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow",
                  "scale": "--scale"}, {"format": "fp16"}, None),
        "convert": (["convert", i["x"], "-o", i["out"], "-q"],
                    {"format": "--to", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow",
                     "scale": "--scale", "threads": "--threads"}, {"format": "fp16"}, None),
        "calc": (["calc", "-o", "add"],
                 {"format": "--format", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow"},
                 {"format": "fp16"}, "0x3c 0x3c\n"),
        "dot": (["dot", i["x"], i["col"]], {"format": "--format", "rounding": "--acc-rounding"}, {}, None),
        "gemm": (["gemm", i["ma"], i["mb"]], {"arch": "--arch", "inst": "--inst", "threads": "--threads"},
                 {"arch": "ampere", "inst": "m16n8k16.f32.f16.f16.f32"}, None),
        "hist": (["hist", i["x"], "-q"],
                 {"format": "--formats", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow",
                  "scale": "--scales", "threads": "--threads"}, {}, None),
        "hist-trace": (["hist", TRACE, "-q", "-f", "fp16"], {"steps": "--steps"}, {}, None),
        "replay": (["replay", TRACE, "-q"],
                   {"format": "--format", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow",
                    "threads": "--threads", "steps": "--steps"}, {}, None),
        # several rank traces replayed as one run (the shipped tensor-parallel run)
        "replay-ranks": (["replay", *RANKS, "-q"],
                         {"format": "--format", "rounding": "--rounding", "profile": "--profile", "overflow": "--overflow",
                          "threads": "--threads", "steps": "--steps", "amax_group": "--amax-group"}, {}, None),
        "trace-merge": (["trace", "merge", *RANKS, "-o", i["out"], "-q"], {"threads": "--threads"}, {}, None),
    }


def command(inputs, cmd, kind=None, value=None):
    args, flags, defaults, stdin = commands(inputs)[cmd]
    given = dict(defaults)
    if kind is not None:
        given[kind] = value
    return [*args, *(f"{flags[k]}={v}" for k, v in given.items())], stdin  # --opt=VALUE: also "", "-1", " 1"


def cases(bad):
    out = []
    placeholders = {k: k for k in ["x", "codes", "col", "out", "dir", "ma", "mb"]}
    for cmd, (_, flags, _, _) in commands(placeholders).items():
        for kind in flags:
            table = BAD[kind] if bad else [(v, None) for v in GOOD[kind]]
            for value, words in table:
                if bad and words is None:
                    continue
                out.append(pytest.param(cmd, kind, value, words, id=f"{cmd}-{kind}-{value!r}"))
    return out


def test_every_subcommand_has_its_options_in_the_table(inputs):
    # A check over an empty table would pass: each command must have some kinds.
    assert all(c[1] for c in commands(inputs).values())
    assert sum(len(c[1]) for c in commands(inputs).values()) >= 30


@pytest.mark.parametrize("cmd,kind,value,words", cases(bad=True))
def test_bad_value_is_a_usage_error(fpscope, inputs, cmd, kind, value, words):
    flags = commands(inputs)[cmd][1]
    args, stdin = command(inputs, cmd, kind, value)
    p = fpscope.run(*args, input=stdin)
    # CLI11 reads "--opt=" as a missing value: still a one-line usage error naming the option.
    assert_one_line_error(p, flags[kind], *(words if value else []), status=USAGE)
    assert not inputs["out"].exists()


@pytest.mark.parametrize("cmd,kind,value,words", cases(bad=False))
def test_good_value_is_accepted(fpscope, inputs, cmd, kind, value, words):
    flags = commands(inputs)[cmd][1]
    args, stdin = command(inputs, cmd, kind, value)
    p = fpscope.run(*args, input=stdin)
    assert p.returncode == 0, p.stderr
    inputs["out"].unlink(missing_ok=True)


def test_the_base_commands_succeed(fpscope, inputs):
    for cmd in commands(inputs):
        args, stdin = command(inputs, cmd)
        p = fpscope.run(*args, input=stdin)
        assert p.returncode == 0, (cmd, p.stderr)
    inputs["out"].unlink(missing_ok=True)


@pytest.mark.parametrize("spec,words", BAD_POLICIES, ids=[s for s, _ in BAD_POLICIES])
def test_bad_policy_is_a_usage_error(fpscope, spec, words):
    assert_one_line_error(fpscope.run("replay", TRACE, "-q", "-P", spec), "--policy", *words, status=USAGE)


@pytest.mark.parametrize("spec", GOOD_POLICIES)
def test_good_policy_is_accepted(fpscope, spec):
    p = fpscope.run("replay", TRACE, "-q", "--json", "-P", spec)
    assert p.returncode == 0, p.stderr


def test_scale_two_to_the_k_in_cast_and_hist(fpscope, inputs):
    # One number syntax: 2^10 is 1024 wherever a scale is read.
    a = fpscope.json("cast", "0.1", "--to", "fp16", "--scale", "2^10", "--json")
    b = fpscope.json("cast", "0.1", "--to", "fp16", "--scale", "1024", "--json")
    assert a == b
    h = fpscope.json("hist", inputs["x"], "-q", "-f", "fp16", "-s", "2^10", "--json")
    assert h["results"][0]["scale"] == 1024


def test_hist_overflow_policy_is_validated_and_used(fpscope, inputs):
    # --overflow clamp used to run as "inf"; saturate must reach the cast hist counts.
    j = fpscope.json("hist", inputs["x"], "-q", "-f", "e5m2", "--overflow", "saturate", "--json")
    assert j["results"][0]["on_overflow"] == "saturate"
