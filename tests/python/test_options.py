"""Every Python entry point runs the table of bad and good option values that every subcommand
runs (tests/options_table.py, tests/cli/test_options.py): a bad value raises ValueError naming
the problem, a good one is accepted. Numbers (scales, thread counts) come as numbers here."""
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fpscope

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from options_table import BAD, BAD_NUMBERS, BAD_POLICIES, GOOD, GOOD_NUMBERS, GOOD_POLICIES  # noqa: E402

TRACE = Path(__file__).resolve().parents[2] / "datasets" / "traces" / "synthetic.h5"
OUT = Path(tempfile.mkdtemp(prefix="fpscope-options-")) / "merged.h5"  # fpscope.merge's output
OPERANDS = Path(__file__).resolve().parents[2] / "datasets" / "traces" / "lm-operands.h5"  # a trace of GEMM operands
RANKS = sorted((Path(__file__).resolve().parents[2] / "datasets" / "traces" / "ranks" / "tp").glob("rank*.h5"))
X = np.linspace(-2, 2, 64, dtype=np.float32)
MA = np.linspace(-2, 2, 16 * 16, dtype=np.float16).astype(np.float32).reshape(16, 16)  # one m16n8k16 tile
MB = np.ones((16, 8), np.float32)
MMA = {"arch": "ampere", "inst": "m16n8k16.f32.f16.f16.f32"}


def codes(fmt):
    """Four codes of fmt's code dtype (uint16 when fmt is no format: the call must then fail on it)."""
    try:
        return np.zeros(4, fpscope.format(fmt or "fp16").dtype)
    except ValueError:
        return np.zeros(4, np.uint16)


def fake_gemm():
    import fpscope.fake_gemm
    return fpscope.fake_gemm


def torch_operands():
    import torch
    return torch.from_numpy(MA), torch.from_numpy(MB)


def torch_model():
    import torch
    return torch.nn.Sequential(torch.nn.Linear(16, 8))


def entry_points():
    """name -> (call(**kw), {kind: keyword}). Each call succeeds with no keywords."""
    keys, counts = fpscope.bucket_histogram(X)
    conv = {"format": "fmt", "rounding": "rounding", "profile": "profile", "overflow": "overflow"}
    return {
        "cast": (lambda **k: fpscope.cast(0.1, **{"fmt": "fp16", **k}), {**conv, "scale": "scale"}),
        "encode": (lambda **k: fpscope.encode(X, **{"fmt": "fp16", **k}), {**conv, "scale": "scale", "threads": "threads"}),
        "decode": (lambda **k: fpscope.decode(codes(k.get("fmt", "e4m3")), **{"fmt": "e4m3", **k}), {"format": "fmt"}),
        "apply": (lambda **k: fpscope.apply("add", codes(k.get("fmt")), codes(k.get("fmt")), **{"fmt": "fp16", **k}),
                  {**conv, "threads": "threads"}),
        "class_counts": (lambda **k: fpscope.class_counts(X, **{"fmt": "fp16", **k}), {**conv, "threads": "threads"}),
        "class_counts_histogram": (lambda **k: fpscope.class_counts_histogram(keys, counts, **{"fmt": "fp16", **k}), conv),
        "bucket_histogram": (lambda **k: fpscope.bucket_histogram(X, **k), {"threads": "threads"}),
        "sweep": (lambda **k: fpscope.sweep(X, **{"fmt": "fp16", **k}), {**conv, "threads": "threads"}),
        "policy_info": (lambda **k: fpscope.policy_info(**{"fmt": "fp16", **k}), conv),
        "format": (lambda **k: fpscope.format(k.get("fmt", "fp16")), {"format": "fmt"}),
        "gemm": (lambda **k: fpscope.gemm(MA, MB, **{**MMA, **k}), {"arch": "arch", "inst": "inst", "threads": "threads"}),
        "mma": (lambda **k: fpscope.mma(MA, MB, **{**MMA, **k}), {"arch": "arch", "inst": "inst"}),
        "mma_info": (lambda **k: fpscope.mma_info(**{**MMA, **k}), {"arch": "arch", "inst": "inst"}),
        "mma_instructions": (lambda **k: fpscope.mma_instructions(**{"arch": "ampere", **k}), {"arch": "arch"}),
        # the PyTorch fake-GEMM on the same models (fpscope.fake_gemm)
        "mma_matmul": (lambda **k: fake_gemm().mma_matmul(*torch_operands(), **{**MMA, **k}),
                       {"arch": "arch", "inst": "inst", "threads": "threads"}),
        "patch_linear": (lambda **k: fake_gemm().patch_linear(torch_model(), **{**MMA, **k}).remove(),
                         {"arch": "arch", "inst": "inst", "threads": "threads"}),
        "replay": (lambda **k: fpscope.replay(TRACE, **k), {"format": "format", "rounding": "rounding", "profile": "profile",
                                                          "overflow": "overflow", "steps": "steps", "threads": "threads"}),
        # several rank traces replayed as one run (the shipped tensor-parallel run)
        "replay_ranks": (lambda **k: fpscope.replay(RANKS, **k),
                         {"format": "format", "rounding": "rounding", "profile": "profile", "overflow": "overflow",
                          "steps": "steps", "threads": "threads", "amax_group": "amax_group"}),
        "merge": (lambda **k: fpscope.merge(RANKS, OUT, **k), {"threads": "threads"}),
        "Trace_ranks": (lambda **k: fpscope.Trace([str(r) for r in RANKS], **k), {"threads": "threads"}),
        # block recipes over a trace's GEMM operands (its recipes: test_bad_policy_raises_value_error_in_recipes_report)
        "recipes_report": (lambda **k: fpscope.recipes_report(OPERANDS, **{"recipes": "mxfp8", **k}), {}),
    }


def cases(bad):
    out = []
    for name, (_, kinds) in entry_points().items():
        for kind, kw in kinds.items():
            if kind in BAD_NUMBERS:
                values = [(v, None) for v in (BAD_NUMBERS if bad else GOOD_NUMBERS)[kind]]
            else:
                values = [(v, w) for v, w in BAD[kind] if w is not None] if bad else [(v, None) for v in GOOD[kind]]
            out += [pytest.param(name, kw, v, w, id=f"{name}-{kind}-{v!r}") for v, w in values]
    return out


def test_the_table_is_not_empty():
    assert len(cases(True)) > 80 and len(cases(False)) > 40


def test_every_entry_point_succeeds_with_its_defaults():
    for name, (call, _) in entry_points().items():
        call()


@pytest.mark.parametrize("name,kw,value,words", cases(bad=True))
def test_bad_value_raises_value_error(name, kw, value, words):
    call = entry_points()[name][0]
    with pytest.raises(ValueError) as e:
        call(**{kw: value})
    for w in words or []:
        assert w in str(e.value).lower(), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,kw,value,words", cases(bad=False))
def test_good_value_is_accepted(name, kw, value, words):
    entry_points()[name][0](**{kw: value})


@pytest.mark.parametrize("spec,words", BAD_POLICIES, ids=[s for s, _ in BAD_POLICIES])
def test_bad_policy_raises_value_error(spec, words):
    with pytest.raises(ValueError) as e:
        fpscope.replay(TRACE, spec)
    for w in words:
        assert w in str(e.value).lower(), str(e.value)


@pytest.mark.parametrize("spec", GOOD_POLICIES)
def test_good_policy_is_accepted(spec):
    assert fpscope.replay(TRACE, spec, tensors=False)["summary"]["steps"] > 0


def test_recipes_table_names_every_policy_the_grammar_accepts():
    names = [r["name"] for r in fpscope.recipes()]
    assert names == ["static", "torch", "deepspeed", "megatron", "te-delayed", "te-current", "mx", "block",
                     "mxfp8", "mxfp6", "mxfp4", "nvfp4", "fp8-block", "deepseek"]
    assert {p.split(":")[0] for p in GOOD_POLICIES} == set(names)


# fpscope.quantize reads recipes with the same grammar: every bad spec is a ValueError naming the
# problem there too, every good block-recipe spec quantizes.
Q = np.linspace(-2, 2, 64 * 4, dtype=np.float32).reshape(4, 64)


@pytest.mark.parametrize("spec,words", BAD_POLICIES, ids=[s for s, _ in BAD_POLICIES])
def test_bad_policy_raises_value_error_in_quantize(spec, words):
    with pytest.raises(ValueError) as e:
        fpscope.quantize(Q, spec)
    for w in words:
        assert w in str(e.value).lower(), str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spec", [p for p in GOOD_POLICIES if p.split(":")[0] in
                                  ("mxfp8", "mxfp6", "mxfp4", "nvfp4", "fp8-block", "deepseek", "te-current")])
def test_good_block_policy_quantizes(spec):
    assert fpscope.quantize(Q, spec, "grad")["dequant"].shape == Q.shape


# fpscope.recipes_report too: every bad spec is a ValueError naming the problem, before the trace is read.
@pytest.mark.parametrize("spec,words", BAD_POLICIES, ids=[s for s, _ in BAD_POLICIES])
def test_bad_policy_raises_value_error_in_recipes_report(spec, words):
    with pytest.raises(ValueError) as e:
        fpscope.recipes_report(OPERANDS, [spec])
    for w in words:
        assert w in str(e.value).lower(), str(e.value)
    assert "\n" not in str(e.value)
