"""fpscope-gpucheck's options without a GPU: --only, --device-chunks, --budget, --json-out,
JSON after a failure, the exit statuses, the dataset default found from the binary."""
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def run(bin_, *args, cwd=None):
    return subprocess.run([bin_, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


KINDS = {"histogram", "unscale", "scale", "intrinsic", "generic"}


def rows(stdout, side="host"):
    """The report's rows: SIDE KIND NAME ..."""
    return [line for line in stdout.splitlines()
            if line.startswith(side + " ") and len(line.split()) > 1 and line.split()[1] in KINDS]


def one_line_error(r):
    assert r.stderr.startswith("fpscope-gpucheck: error: "), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_only_a_kind_runs_that_kind_and_each_row_says_what_it_compares(gpucheck):
    r = run(gpucheck, "--host-only", "--only", "unscale")
    assert r.returncode == 0, r.stderr
    got = rows(r.stdout)
    assert len(got) == 6
    for line in got:
        assert line.split()[1] == "unscale"
        assert "[element code (nvcc host pass) vs plain C++ (torch's definition)]" in line
        assert " 0 mismatches" in line
    assert "0 mismatches in 6 checks" in r.stdout


def test_only_takes_name_prefixes_comma_separated(gpucheck):
    r = run(gpucheck, "--host-only", "--only", "f16.rn,e4m3.satfinite", "--stride", "65521")
    assert r.returncode == 0, r.stderr
    names = {line[17:57].strip() for line in rows(r.stdout)}
    assert names == {"f16.rn", "f16.rn scale 1024", "e4m3.satfinite", "e4m3.satfinite scale 0.375"}
    for line in rows(r.stdout):
        assert "[NVIDIA header host code (nvcc host pass) vs emulator]" in line


def test_the_scale_step_rows_pass_on_every_nan(gpucheck):
    r = run(gpucheck, "--host-only", "--only", "scale")
    assert r.returncode == 0, r.stderr
    got = rows(r.stdout)
    assert len(got) == 3
    assert "67108856 compared        0 mismatches" in got[0]  # 4 scales x every NaN pattern
    assert "x86 MULSS" in got[0]


@pytest.mark.parametrize("args", [
    ["--only", "nosuch"], ["--device-chunks", "0"], ["--device-chunks", "129"], ["--device-chunks", "x"],
    ["--budget", "0"], ["--budget", "-1"], ["--budget", "inf"], ["--only", ""], ["--only", "a,,b"],
    ["--stride", "0"], ["--host-only", "--device-only"], ["--json", "--json-out", "x.json"], ["--bogus"],
    ["--budget"],
])
def test_a_bad_command_line_is_one_error_line_and_exit_2(gpucheck, args, tmp_path):
    r = run(gpucheck, "--host-only", *args, cwd=tmp_path) if args[0] != "--host-only" else run(gpucheck, *args)
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    one_line_error(r)
    assert r.stdout == ""
    assert not (tmp_path / "x.json").exists()


def test_device_chunks_without_a_device_is_skipped_never_passed(gpucheck, has_device):
    if has_device:
        pytest.skip("a CUDA device is here")
    r = run(gpucheck, "--device-only", "--device-chunks", "16")
    assert r.returncode == 77, r.stderr
    assert "16 of 128 chunks of 2^25 inputs per sweep" in r.stdout
    assert "SKIPPED: no CUDA" in r.stdout
    assert rows(r.stdout, "device") == []


def test_no_device_in_json_names_the_cuda_error_and_counts_the_skipped(gpucheck, has_device):
    if has_device:
        pytest.skip("a CUDA device is here")
    r = run(gpucheck, "--device-only", "--json")
    assert r.returncode == 77
    doc = json.loads(r.stdout)
    assert doc["exit_status"] == 77 and doc["complete"] is True
    assert doc["device_state"] in ("no_driver", "no_device")
    assert doc["device"].startswith("SKIPPED: no CUDA")
    # histogram (each dataset + the patterns), unscale 6, scale 2, intrinsics 12, generic 77
    assert doc["skipped"] >= 1 + 6 + 2 + 12 + 77 and doc["ran"] == 0
    kinds = [r["kind"] for r in doc["results"]]
    assert kinds.index("histogram") < kinds.index("unscale") < kinds.index("scale") < kinds.index("intrinsic") \
        < kinds.index("generic")  # the least proven first


def test_the_budget_lists_what_did_not_run_and_exits_5(gpucheck):
    r = run(gpucheck, "--host-only", "--only", "unscale", "--budget", "1e-9")
    assert r.returncode == 5, r.stderr
    got = rows(r.stdout)
    assert len(got) == 6 and all(line.endswith("not run (budget)") for line in got)
    assert "6 not run (budget)" in r.stdout


def test_json_is_written_after_a_failure_too(gpucheck):
    r = run(gpucheck, "--host-only", "--only", "unscale", "--budget", "1e-9", "--json")
    assert r.returncode == 5
    doc = json.loads(r.stdout)
    assert doc["exit_status"] == 5 and doc["not_run"] == 6 and doc["ran"] == 0
    assert {x["state"] for x in doc["results"]} == {"not run (budget)"}


def test_json_out_holds_the_whole_report_with_what_each_row_compares(gpucheck, tmp_path):
    out = tmp_path / "g.json"
    r = run(gpucheck, "--host-only", "--only", "unscale,histogram", "--stride", "65521", "--json-out", str(out))
    assert r.returncode == 0, r.stderr
    assert rows(r.stdout)  # the text report still on stdout
    doc = json.loads(out.read_text())
    assert doc["complete"] is True and doc["exit_status"] == 0 and doc["mismatches"] == 0
    assert doc["ran"] == len(doc["results"]) >= 8
    for x in doc["results"]:
        assert " vs " in x["compares"] and x["state"] == "ran" and x["count"] > 0


def test_json_out_is_rewritten_after_every_row_so_a_kill_keeps_the_rows_done(gpucheck, tmp_path):
    out = tmp_path / "g.json"
    p = subprocess.Popen([gpucheck, "--host-only", "--only", "unscale,scale", "--json-out", str(out)],
                         stdout=subprocess.PIPE, text=True)
    try:
        seen = 0
        for line in p.stdout:
            seen += line.startswith("host ")
            if seen == 2:  # row 1 was saved before row 2 was printed
                break
        assert seen == 2
        p.kill()
    finally:
        p.wait(timeout=60)
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc["exit_status"] is None
    assert 1 <= len(doc["results"]) < 9
    assert doc["results"][0]["kind"] == "scale"


def test_the_datasets_are_found_from_the_binary_not_a_compiled_in_path(gpucheck, tmp_path):
    # From another working directory: found above the binary (the build tree in the checkout).
    r = run(gpucheck, "--host-only", "--only", "unscale", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: no float32 .npy" not in r.stdout
    # A copy with no checkout above it (nor above the working directory): synthetic data only,
    # and the note names the relative default, not a path compiled in.
    with tempfile.TemporaryDirectory() as away:  # outside the checkout (tmp_path is in the build tree)
        copy = Path(away) / "bin" / "fpscope-gpucheck"
        copy.parent.mkdir()
        shutil.copy2(gpucheck, copy)
        r = run(str(copy), "--host-only", "--only", "unscale", cwd=away)
    assert r.returncode == 0, r.stderr
    assert "note: no float32 .npy files in datasets/lm-grads:" in r.stdout
    assert len(rows(r.stdout)) == 6


def test_an_unwritable_json_out_is_one_error_line_before_any_check(gpucheck, tmp_path):
    r = run(gpucheck, "--host-only", "--only", "unscale", "--json-out", str(tmp_path / "no" / "such" / "x.json"))
    assert r.returncode == 2
    one_line_error(r)
    assert "x.json" in r.stderr and rows(r.stdout) == []
