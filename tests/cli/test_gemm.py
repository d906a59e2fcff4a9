"""fpscope gemm: the CLI over fpscope::mma (the bits are proven against MMA-Sim by
tests/python/test_mma_oracle.py; here: what the command reads, writes, prints and refuses)."""
import json

import numpy as np
import pytest

from conftest import assert_one_line_error
from reference import Format

AMPERE = ["--arch", "ampere", "--inst", "m16n8k16.f32.f16.f16.f32"]


def tile(tmp_path, k=64):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, k)).astype(np.float16)
    b = rng.standard_normal((k, 8)).astype(np.float16)
    np.save(tmp_path / "a.npy", a)  # float16 file
    np.save(tmp_path / "b.npy", b.astype(np.float32))  # float32 file, fp16 values
    return a.astype(np.float64), b.astype(np.float64)


def test_writes_d_and_reports_errors(fpscope, tmp_path):
    a, b = tile(tmp_path)
    c = np.full((16, 8), 0.5, np.float32)
    np.save(tmp_path / "c.npy", c)
    out = fpscope.ok("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--c", tmp_path / "c.npy", *AMPERE,
                     "-o", tmp_path / "d.npy")
    assert "errors against the exact A*B+C over every result" in out
    assert "F=24, L=8, RZ-FP32" in out
    d = np.load(tmp_path / "d.npy")
    assert d.dtype == np.float32 and d.shape == (16, 8)
    exact = a @ b + 0.5
    assert 0 < np.max(np.abs(d - exact) / np.abs(exact)) < 1e-4  # truncated, but close


def test_json_side_by_side(fpscope, tmp_path):
    tile(tmp_path, k=256)
    j = fpscope.json("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "volta,ampere,hopper", "--inst",
                     "m8n8k4.f32.f16.f16.f32,m16n8k16.f32.f16.f16.f32,m16n8k16.f32.f16.f16.f32", "--json")
    assert j["shape"] == [16, 8, 256]
    assert [r["arch"] for r in j["runs"]] == ["volta", "ampere", "hopper"]
    assert all(r["checked"] == 128 for r in j["runs"])
    assert j["runs"][0]["differ_from_first"] == 0
    assert j["runs"][1]["differ_from_first"] > 0  # generations differ in bits


def test_amd_generations_side_by_side(fpscope, tmp_path):
    # CDNA1 (exact sums), CDNA2 (binary32 adds, subnormals flushed), CDNA3 (truncated sums) on the
    # same fp16 tile with a subnormal in A: three sets of bits; CDNA2's f64 and CDNA1's lack of
    # CDNA2's bf16_1k are refused by name.
    a, b = tile(tmp_path, k=32)
    a[0, 0] = 2.0**-20  # an fp16 subnormal: CDNA2 reads it as 0
    np.save(tmp_path / "a.npy", a.astype(np.float16))
    j = fpscope.json("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "cdna1,cdna2,cdna3", "--inst",
                     "f32_16x16x16f16,f32_16x16x16f16,f32_16x16x16_f16", "--json")
    assert [r["arch"] for r in j["runs"]] == ["cdna1", "cdna2", "cdna3"]
    assert all(r["differ_from_first"] > 0 for r in j["runs"][1:])
    out = fpscope.ok("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "cdna2", "--inst", "f32_16x16x16f16")
    assert "FTZ-MUL-ADD" in out and "subnormals flushed" in out
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "cdna2", "--inst", "f64_16x16x4f64")
    assert_one_line_error(p, "f64 instructions are not modelled", status=2)
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "cdna1", "--inst", "f32_16x16x16bf16_1k")
    assert_one_line_error(p, "not a modelled instruction of cdna1", status=2)


def test_f16_output_file_is_float16(fpscope, tmp_path):
    tile(tmp_path)
    fpscope.ok("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "hopper", "--inst",
               "m16n8k16.f16.f16.f16.f16", "-o", tmp_path / "d.npy")
    assert np.load(tmp_path / "d.npy").dtype == np.float16


def test_refusals(fpscope, tmp_path):
    tile(tmp_path)
    np.save(tmp_path / "bad.npy", np.full((16, 64), 0.1, np.float32))
    p = fpscope.run("gemm", tmp_path / "bad.npy", tmp_path / "b.npy", *AMPERE)
    assert_one_line_error(p, "A[0,0] = 0.1", "not exactly a fp16 value", status=1)
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "a.npy", *AMPERE)
    assert_one_line_error(p, "do not chain", status=2)
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", *AMPERE, "--promote", "24")
    assert_one_line_error(p, "--promote", "not a multiple", status=2)
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", "volta,ampere", "--inst",
                    "m16n8k16.f32.f16.f16.f32", "-o", tmp_path / "d.npy")
    assert_one_line_error(p, "volta", status=2)
    assert not (tmp_path / "d.npy").exists()


def test_help_has_examples(fpscope):
    out = fpscope.ok("gemm", "--help")
    assert "Examples:" in out and "--promote 128" in out


def test_block_scaled_mxfp8(fpscope, tmp_path):
    rng = np.random.default_rng(5)
    codes = lambda shape: rng.integers(0, 0x7F, shape).astype(np.uint8)  # noqa: E731  (finite e4m3 codes)
    np.save(tmp_path / "a.npy", codes((128, 64)))
    np.save(tmp_path / "b.npy", codes((64, 8)))
    np.save(tmp_path / "sa.npy", np.full((128, 2), 128, np.uint8))  # 2^1
    np.save(tmp_path / "sb.npy", np.full((2, 8), 125, np.uint8))  # 2^-2
    inst = ["--arch", "blackwell", "--inst", "m128n8k32.kind::mxf8f6f4.block32.f32.e4m3.e4m3.ue8m0"]
    j = fpscope.json("gemm", tmp_path / "a.npy", tmp_path / "b.npy", *inst, "--json", "--scales",
                     f"{tmp_path / 'sa.npy'},{tmp_path / 'sb.npy'}")
    # errors against the exact product with the scales: truncation only, far below 1e-5
    assert j["runs"][0]["max_abs_rel_error"] < 1e-5 and j["runs"][0]["checked"] == 1024
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", *inst)
    assert_one_line_error(p, "--scales", "block-scaled", status=2)
    np.save(tmp_path / "sb.npy", np.full((2, 8), 255, np.uint8))
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", *inst, "--scales",
                    f"{tmp_path / 'sa.npy'},{tmp_path / 'sb.npy'}")
    assert_one_line_error(p, "NaN", status=1)


def test_empty_inner_dimension_cannot_ask_for_a_huge_d(fpscope, tmp_path):
    # (m, 0) and (0, n) arrays hold no data, whatever m and n they declare
    np.save(tmp_path / "a.npy", np.zeros((1 << 20, 0), np.float32))
    np.save(tmp_path / "b.npy", np.zeros((0, 1 << 20), np.float32))
    p = fpscope.run("gemm", tmp_path / "a.npy", tmp_path / "b.npy", *AMPERE)
    assert_one_line_error(p, "refused", status=1)


def test_dot_mma_is_the_instruction_model(fpscope, tmp_path):
    rng = np.random.default_rng(11)
    x = np.abs(rng.standard_normal(4096)).astype(np.float16)  # fp16 values
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[::-1].copy())
    j = fpscope.json("dot", tmp_path / "x.npy", tmp_path / "y.npy", "--mma", "hopper:m16n8k16.f32.f16.f16.f32",
                     "--json")
    assert "F=25, L=16, RZ-FP32" in j["accumulator"]
    np.save(tmp_path / "xm.npy", x.reshape(1, -1))
    np.save(tmp_path / "ym.npy", x[::-1].copy().reshape(-1, 1))
    fpscope.ok("gemm", tmp_path / "xm.npy", tmp_path / "ym.npy", "--arch", "hopper", "--inst",
               "m16n8k16.f32.f16.f16.f32", "-o", tmp_path / "d.npy")
    assert j["results"][0]["value"] == float(np.load(tmp_path / "d.npy")[0, 0])  # the same model
    for bad, words in [("hopper", ["expected arch:inst"]), ("hoper:x", ["--mma", "unknown architecture"]),
                       ("hopper:x", ["--mma", "not a modelled instruction"])]:
        assert_one_line_error(fpscope.run("dot", tmp_path / "x.npy", tmp_path / "y.npy", "--mma", bad), *words,
                              status=2)
    p = fpscope.run("dot", tmp_path / "x.npy", tmp_path / "y.npy", "--mma", "hopper:m16n8k16.f32.f16.f16.f32",
                    "--acc", "fp16")
    assert_one_line_error(p, "--mma", "drop --format/--acc", status=2)


HOPPER_FP8 = ("hopper", "m64n8k32.f32.e4m3.e4m3")
BLACKWELL_FP8 = ("blackwell", "m128n8k32.kind::f8f6f4.f32.e4m3.e4m3")


def fp8_operands(tmp_path, k=1024):
    """Positive e4m3 values (DeepSeek-V3's setting), as float32 files: their products have at most
    8 significant bits within 2^-18 .. 2^18, so NumPy's float64 sums of up to 4096 of them are exact."""
    rng = np.random.default_rng(3)
    codes = lambda shape: rng.integers(0x30, 0x50, shape).astype(np.uint8)  # noqa: E731  2^-3 .. 2^2 or so
    e4m3 = Format("e4m3")  # the CLI tests' independent decoder
    a, b = e4m3.decode_all(codes((8, k))), e4m3.decode_all(codes((k, 16)))
    np.save(tmp_path / "a.npy", a.astype(np.float32))
    np.save(tmp_path / "b.npy", b.astype(np.float32))
    return a.astype(np.float64), b.astype(np.float64)


def sweep_args(tmp_path, *archs):
    return ("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", ",".join(a for a, _ in archs), "--inst",
            ",".join(i for _, i in archs))


def test_k_sweep_points_are_the_prefix_gemms(fpscope, tmp_path):
    # Each depth's errors are those of the GEMM of A's first K columns and B's first K rows: D of
    # that GEMM written by -o, its error measured here against NumPy's exact float64 product.
    a, b = fp8_operands(tmp_path)
    j = fpscope.json(*sweep_args(tmp_path, HOPPER_FP8), "--k-sweep", "32:1000", "--json")
    assert j["k_sweep"] == [32, 64, 128, 256, 512, 1000] and j["shape"] == [8, 16, 1024]
    (run,) = j["sweep"]
    assert run["promote"] == 0 and [p["k"] for p in run["points"]] == j["k_sweep"]
    for p in run["points"]:
        k = p["k"]
        np.save(tmp_path / "ak.npy", a[:, :k].astype(np.float32))
        np.save(tmp_path / "bk.npy", b[:k].astype(np.float32))
        fpscope.ok("gemm", tmp_path / "ak.npy", tmp_path / "bk.npy", "--arch", HOPPER_FP8[0], "--inst", HOPPER_FP8[1],
                   "-o", tmp_path / "d.npy")
        exact = a[:, :k] @ b[:k]
        rel = np.abs(np.load(tmp_path / "d.npy").astype(np.float64) - exact) / exact
        assert p["checked"] == 128 and p["max_abs_rel_error"] == rel.max(), k
        assert p["mean_abs_rel_error"] == pytest.approx(rel.mean(), rel=1e-12)
    # Hopper's 13-bit truncation: the error grows with K, by more than 4x from 128 to 1000
    errs = [p["max_abs_rel_error"] for p in run["points"]]
    assert errs == sorted(errs) and errs[-1] > 4 * errs[2]


def test_k_sweep_promotion_and_architectures_side_by_side(fpscope, tmp_path):
    fp8_operands(tmp_path)
    j = fpscope.json(*sweep_args(tmp_path, HOPPER_FP8, BLACKWELL_FP8), "--k-sweep", "64,128,1024", "--promote", "128",
                     "--json")
    runs = {(r["arch"], r["promote"]): r["points"] for r in j["sweep"]}
    assert list(runs) == [("hopper", 0), ("hopper", 128), ("blackwell", 0), ("blackwell", 128)]
    err = {key: [p["max_abs_rel_error"] for p in pts] for key, pts in runs.items()}
    # up to one promotion group, promoting changes nothing; beyond, DeepSeek's fix
    assert err[("hopper", 0)][:2] == err[("hopper", 128)][:2]
    assert err[("hopper", 128)][2] < err[("hopper", 0)][2] / 4
    assert err[("blackwell", 0)][2] < err[("hopper", 128)][2] / 100  # 25 bits kept against 13
    csv = fpscope.ok(*sweep_args(tmp_path, HOPPER_FP8, BLACKWELL_FP8), "--k-sweep", "64,128,1024", "--promote", "128",
                     "--csv").splitlines()
    assert csv[0].startswith("arch,inst,promote,k,checked,")
    assert len(csv) == 1 + 4 * 3
    assert csv[6].split(",")[:4] == ["hopper", HOPPER_FP8[1], "128", "1024"]
    assert float(csv[6].split(",")[7]) == err[("hopper", 128)][2]
    out = fpscope.ok(*sweep_args(tmp_path, HOPPER_FP8), "--k-sweep", "64:128")
    assert "K = 64 .. 128 (2 depths)" in out and "F=13, L=32, RZ-E8M13" in out


def test_k_sweep_plot(fpscope, tmp_path):
    import xml.etree.ElementTree as ET

    fp8_operands(tmp_path, k=256)
    args = (*sweep_args(tmp_path, HOPPER_FP8, BLACKWELL_FP8), "--k-sweep", "32:256", "--promote", "128")
    out = fpscope.ok(*args, "--plot", tmp_path / "e.svg")
    assert "wrote" in out and ET.parse(tmp_path / "e.svg").getroot().tag.endswith("svg")
    fpscope.ok(*args, "--plot", tmp_path / "e.png", "--json")
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_k_sweep_refusals(fpscope, tmp_path):
    fp8_operands(tmp_path, k=256)
    base = sweep_args(tmp_path, HOPPER_FP8)
    for extra, words in [(["--k-sweep", "0:64"], ["--k-sweep"]),
                         (["--k-sweep", "64:512"], ["--k-sweep", "beyond the inner dimension (256)"]),
                         (["--k-sweep", "128:64"], ["--k-sweep", "LO <= HI"]),
                         (["--k-sweep", "64", "-o", tmp_path / "d.npy"], ["-o", "--k-sweep"]),
                         (["--plot", tmp_path / "e.svg"], ["--plot", "--k-sweep"]),
                         (["--csv"], ["--csv", "--k-sweep"]),
                         (["--k-sweep", "64", "--plot", tmp_path / "e.pdf"], [".svg or .png"]),
                         (["--k-sweep", "64", "--csv", "--json"], ["--csv", "--json"])]:
        assert_one_line_error(fpscope.run(*base, *extra), *words, status=2)
    assert not (tmp_path / "d.npy").exists() and not (tmp_path / "e.svg").exists()


def test_1x128_scales_errors_are_against_the_exact_scaled_product(fpscope, tmp_path):
    # DeepSeek-V3's recipe from files: float32 scales, A's (m, k/128), B's (k/128, n/128). The
    # reported errors are those of D (-o) against the exact sum of a * sa * b * sb (fractions).
    from fractions import Fraction

    rng = np.random.default_rng(9)
    e4m3 = Format("e4m3")
    m, k, n = 3, 260, 130
    a = e4m3.decode_all(rng.integers(0, 0x7F, (m, k)).astype(np.uint8) | (rng.integers(0, 2, (m, k)) * 0x80).astype(np.uint8))
    b = e4m3.decode_all(rng.integers(0, 0x7F, (k, n)).astype(np.uint8))
    sa = (np.exp2(rng.integers(-8, 8, (m, 3))) * rng.uniform(1, 2, (m, 3))).astype(np.float32)
    sb = (np.exp2(rng.integers(-8, 8, (3, 2))) * rng.uniform(1, 2, (3, 2))).astype(np.float32)
    for name, x in [("a", a), ("b", b), ("sa", sa), ("sb", sb)]:
        np.save(tmp_path / f"{name}.npy", np.asarray(x, np.float32))
    args = ("gemm", tmp_path / "a.npy", tmp_path / "b.npy", "--arch", HOPPER_FP8[0], "--inst", HOPPER_FP8[1],
            "--scales", f"{tmp_path / 'sa.npy'},{tmp_path / 'sb.npy'}")
    j = fpscope.json(*args, "--json")
    fpscope.ok(*args, "-o", tmp_path / "d.npy")
    d = np.load(tmp_path / "d.npy")
    rel = []
    for i in range(m):
        for jj in range(n):
            exact = sum(Fraction(float(a[i, t])) * Fraction(float(sa[i, t // 128])) * Fraction(float(b[t, jj])) *
                        Fraction(float(sb[t // 128, jj // 128])) for t in range(k))
            rel.append(abs((Fraction(float(d[i, jj])) - exact) / exact))
    assert j["runs"][0]["checked"] == m * n
    assert j["runs"][0]["max_abs_rel_error"] == pytest.approx(float(max(rel)), rel=1e-12)
    assert 0 < max(rel) < 0.1  # signed A: some results cancel
    out = fpscope.ok(*args)
    assert "1x128 / 128x128 scales, promoted to fp32 every 128" in out
    # --k-sweep takes each depth's first scale blocks: K = 200 is the GEMM of the first 200
    # columns with A's first two scale columns (B's scales have as many rows)
    sweep = fpscope.json(*args, "--k-sweep", "200", "--json")["sweep"][0]
    assert sweep["promote"] == 128
    np.save(tmp_path / "a2.npy", np.asarray(a[:, :200], np.float32))
    np.save(tmp_path / "b2.npy", np.asarray(b[:200], np.float32))
    np.save(tmp_path / "sa2.npy", sa[:, :2].copy())
    np.save(tmp_path / "sb2.npy", sb[:2].copy())
    j2 = fpscope.json("gemm", tmp_path / "a2.npy", tmp_path / "b2.npy", "--arch", HOPPER_FP8[0], "--inst",
                      HOPPER_FP8[1], "--scales", f"{tmp_path / 'sa2.npy'},{tmp_path / 'sb2.npy'}", "--json")
    assert sweep["points"][0]["max_abs_rel_error"] == j2["runs"][0]["max_abs_rel_error"] > 0
    # refusals: codes where float32 scales are due, a wrong shape, another promotion
    np.save(tmp_path / "sc.npy", np.ones((m, 3), np.uint8))
    p = fpscope.run(*args[:-1], f"{tmp_path / 'sc.npy'},{tmp_path / 'sb.npy'}")
    assert_one_line_error(p, "float32", status=1)
    p = fpscope.run(*args[:-1], f"{tmp_path / 'sb.npy'},{tmp_path / 'sb.npy'}")
    assert_one_line_error(p, "shape", "(3, 3)", status=2)
    assert_one_line_error(fpscope.run(*args, "--promote", "256"), "every 128", status=2)
