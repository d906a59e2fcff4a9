"""fpscope gemm: the CLI over fpscope::mma (the bits are proven against MMA-Sim by
tests/python/test_mma_oracle.py; here: what the command reads, writes, prints and refuses)."""
import json

import numpy as np

from conftest import assert_one_line_error

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
