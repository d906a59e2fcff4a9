"""tools/gpucheck/device-run.sh without a GPU: the dry run, the refusals (driver too old, CPU
without what the binary needs, a failing nvidia-smi), and the real-run path up to the point
where CUDA finds no device, through fake probes (GPUCHECK_NVIDIA_SMI, GPUCHECK_CPUINFO,
GPUCHECK_NEEDS). Each exit status is the script's own, never 77."""
import json
import os
import subprocess
from pathlib import Path

import pytest

V3 = "pni ssse3 sse4_1 sse4_2 popcnt avx avx2 fma f16c bmi1 bmi2 abm movbe xsave"


def fake_smi(tmp, driver="580.65.06", name="NVIDIA H100 80GB HBM3", fail=None):
    p = tmp / "nvidia-smi"
    if fail:
        body = f'echo "{fail}"; exit 9'
    else:
        body = (f'case "$*" in *--query-gpu*) echo "{name}, {driver}, 9.0, Disabled, 81559 MiB";; '
                f'*) echo "fake nvidia-smi table";; esac')
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return p


def fake_cpu(tmp, flags):
    p = tmp / "cpuinfo"
    p.write_text(f"processor\t: 0\nmodel name\t: Fake CPU 9000\nflags\t\t: fpu sse sse2 {flags}\n\n")
    return p


def fake_needs(tmp, flags):
    p = tmp / "needs"
    p.write_text("# CPU flags fpscope-gpucheck was compiled to require (-march=x86-64-v3)\n" + "\n".join(flags.split()) + "\n")
    return p


def script(source, gpucheck, tmp, *args, smi=None, cpu=None, needs=None):
    env = dict(os.environ)
    env.pop("OUT", None)
    env["GPUCHECK_NVIDIA_SMI"] = str(smi) if smi else str(tmp / "no-such-nvidia-smi")
    if cpu:
        env["GPUCHECK_CPUINFO"] = str(cpu)
    if needs:
        env["GPUCHECK_NEEDS"] = str(needs)
    return subprocess.run(["bash", str(source / "tools/gpucheck/device-run.sh"), "--bin", gpucheck,
                           "--out", str(tmp / "out"), *args],
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize("mode", [["--quick"], []])
def test_no_gpu_is_a_dry_run_with_its_own_exit_status(source, gpucheck, tmp_path, mode):
    r = script(source, gpucheck, tmp_path, *mode, cpu=fake_cpu(tmp_path, V3), needs=fake_needs(tmp_path, V3))
    assert r.returncode == 64, r.stdout + r.stderr
    assert "DRY RUN (no GPU here: no " in r.stdout
    assert "cpu: every flag the binary needs is here (14 flags): ok" in r.stdout
    md = (tmp_path / "out" / ("quick.md" if mode else "full.md")).read_text()
    assert md.startswith("## no GPU — ")
    assert "**DRY RUN** (exit 64)" in md
    phases = [line for line in md.splitlines() if line.startswith("- phase ")]
    assert len(phases) == 4 and all("(checked: exit 77)" in p or "(checked: exit 5)" in p for p in phases)
    assert ("--device-chunks 4" in md) == bool(mode)
    assert "Fake CPU 9000" in md
    assert (tmp_path / "out" / ("quick.log" if mode else "full.log")).read_text().count("DRY RUN") >= 2


def test_a_driver_too_old_is_refused_not_reported_as_no_gpu(source, gpucheck, tmp_path):
    for extra in ([], ["--dry-run"], ["--quick"]):
        r = script(source, gpucheck, tmp_path, *extra, smi=fake_smi(tmp_path, driver="575.57.08"))
        assert r.returncode == 65, r.stdout + r.stderr
        assert "REFUSED: NVIDIA driver 575.57.08 is older than 580" in r.stdout
    md = (tmp_path / "out" / "quick.md").read_text()
    assert md.startswith("## NVIDIA H100 80GB HBM3, sm_90 — ")
    assert "driver 575.57.08, MIG mode Disabled, 81559 MiB" in md
    assert "**REFUSED** (exit 65)" in md


def test_a_failing_nvidia_smi_is_an_unusable_driver(source, gpucheck, tmp_path):
    msg = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    r = script(source, gpucheck, tmp_path, smi=fake_smi(tmp_path, fail=msg))
    assert r.returncode == 65
    assert "nvidia-smi is installed but fails (" + msg in r.stdout


def test_a_cpu_without_what_the_binary_needs_is_refused(source, gpucheck, tmp_path):
    needs = fake_needs(tmp_path, V3 + " avx512f avx512bw")
    r = script(source, gpucheck, tmp_path, "--dry-run", smi=fake_smi(tmp_path), cpu=fake_cpu(tmp_path, V3), needs=needs)
    assert r.returncode == 66, r.stdout + r.stderr
    line = [x for x in r.stdout.splitlines() if "REFUSED" in x][0]
    assert "lacks avx512f avx512bw," in line and "Fake CPU 9000" in line
    # and no AVX2: named too
    r = script(source, gpucheck, tmp_path, smi=fake_smi(tmp_path), cpu=fake_cpu(tmp_path, V3.replace("avx2 ", "")),
               needs=fake_needs(tmp_path, V3))
    assert r.returncode == 66 and "lacks avx2," in r.stdout


def test_a_binary_without_its_needs_file_is_refused(source, gpucheck, tmp_path):
    r = script(source, gpucheck, tmp_path, smi=fake_smi(tmp_path), needs=tmp_path / "absent")
    assert r.returncode == 66 and "cannot tell what the binary needs" in r.stdout


def test_dry_run_on_a_good_gpu_machine_checks_and_runs_nothing(source, gpucheck, tmp_path):
    r = script(source, gpucheck, tmp_path, "--dry-run", smi=fake_smi(tmp_path), cpu=fake_cpu(tmp_path, V3),
               needs=fake_needs(tmp_path, V3))
    assert r.returncode == 64, r.stdout + r.stderr
    assert "driver: 580.65.06 >= 580: ok" in r.stdout and "DRY RUN (--dry-run)" in r.stdout
    assert not (tmp_path / "out" / "full.json").exists()


def test_the_real_run_path_stops_when_cuda_finds_no_device(source, gpucheck, tmp_path, has_device):
    # nvidia-smi (fake) lists an H100, CUDA here finds none: the phases start, the first says 77,
    # the script stops with 67 and leaves the results file, the log and the JSON of that phase.
    if has_device:
        pytest.skip("a CUDA device is here")
    r = script(source, gpucheck, tmp_path, "--quick", smi=fake_smi(tmp_path), cpu=fake_cpu(tmp_path, V3),
               needs=fake_needs(tmp_path, V3))
    assert r.returncode == 67, r.stdout + r.stderr
    out = tmp_path / "out"
    md = (out / "quick.md").read_text()
    assert "### phase 1: histogram, unscale, scale step (4 chunks)" in md
    assert "`fpscope-gpucheck --device-only --only histogram,unscale,scale --device-chunks 4`: exit 77" in md
    assert "### phase 2" not in md
    assert md.rstrip().splitlines()[-1].startswith("result: NO CUDA DEVICE although nvidia-smi lists one")
    docs = json.loads((out / "quick.json").read_text())
    assert len(docs) == 1 and docs[0]["exit_status"] == 77 and docs[0]["skipped"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["quick.json", "quick.log", "quick.md"]


@pytest.mark.parametrize("args", [["--budget", "x"], ["--budget", "0"], ["--prefix", "a/b"], ["--frobnicate"]])
def test_bad_arguments_exit_2(source, gpucheck, tmp_path, args):
    r = script(source, gpucheck, tmp_path, *args)
    assert r.returncode == 2 and r.stderr.startswith("device-run.sh: error: ")


def test_no_binary_exits_2(source, tmp_path):
    r = script(source, str(tmp_path / "absent"), tmp_path)
    assert r.returncode == 2 and "no fpscope-gpucheck binary" in r.stderr
