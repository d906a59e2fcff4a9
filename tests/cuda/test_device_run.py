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
    assert len(phases) == 5 and all("(checked: exit 77)" in p or "(checked: exit 5)" in p for p in phases)
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
    assert "### phase 1: tensor-core instructions (mma.sync, wgmma)" in md
    assert "`fpscope-gpucheck --device-only --only mma`: exit 77" in md
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


FAKE_GPUCHECK = r"""#!/bin/sh
# A stand-in for fpscope-gpucheck: prints one row, writes its --json-out, exits as told by
# FAKE_RC_<n> for the phase whose --only is <n> (mma, histogram..., intrinsic, generic, scale).
out= only=
while [ $# -gt 0 ]; do
  case "$1" in --json-out) out=$2; shift ;; --only) only=$2; shift ;; esac
  shift
done
key=$(printf '%s' "$only" | cut -d, -f1)
eval rc=\${FAKE_RC_$key:-0}
eval hang=\${FAKE_HANG_$key:-0}
echo "device $key   fake row       1 compared 0 mismatches 0.00 s  [fake vs fake]"
printf '{\n  "only": "%s",\n  "exit_status": %s\n}\n' "$only" "$rc" > "$out"
[ "$hang" = 0 ] || sleep "$hang"
exit "$rc"
"""


def fake_run(source, tmp, *args, **rcs):
    bin_ = tmp / "fake-gpucheck"
    bin_.write_text(FAKE_GPUCHECK)
    bin_.chmod(0o755)
    env_extra = {f"FAKE_RC_{k}" if not k.startswith("HANG_") else f"FAKE_{k}": str(v) for k, v in rcs.items()}
    old = dict(os.environ)
    try:
        os.environ.update(env_extra)
        os.environ["GPUCHECK_GRACE"] = "1"
        return script(source, str(bin_), tmp, *args, smi=fake_smi(tmp), cpu=fake_cpu(tmp, V3),
                      needs=fake_needs(tmp, V3))
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_a_passing_run_leaves_one_results_file_with_every_phase(source, tmp_path):
    r = fake_run(source, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "out" / "full.md").read_text()
    assert [line for line in md.splitlines() if line.startswith("### phase")] == [
        "### phase 1: tensor-core instructions (mma.sync, wgmma)",
        "### phase 2: histogram, unscale, scale step (all 2^32)", "### phase 3: hardware intrinsics (all 2^32)",
        "### phase 4: generic kernel (32 chunks of 2^25 spread across 2^32)", "### phase 5: host side (whole)"]
    assert md.count("```") == 10 and md.count("fake row") == 5
    assert md.rstrip().splitlines()[-1].startswith("result: PASS: every phase ran, 0 mismatches (exit 0, ")
    docs = json.loads((tmp_path / "out" / "full.json").read_text())
    assert [d["only"] for d in docs] == ["mma", "histogram,unscale,scale", "intrinsic", "generic", ""]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["full.json", "full.log", "full.md"]


def test_a_mismatch_in_one_phase_is_the_verdict_and_the_others_still_run(source, tmp_path):
    r = fake_run(source, tmp_path, intrinsic=1, generic=5)
    assert r.returncode == 1
    md = (tmp_path / "out" / "full.md").read_text()
    assert "`fpscope-gpucheck --device-only --only intrinsic`: exit 1" in md and md.count("### phase") == 5
    assert "result: MISMATCH" in md


def test_a_phase_past_the_budget_is_stopped_and_the_rest_listed_not_run(source, tmp_path):
    r = fake_run(source, tmp_path, "--budget", "2", HANG_intrinsic=30)
    assert r.returncode == 3, r.stdout + r.stderr
    md = (tmp_path / "out" / "full.md").read_text()
    assert "`fpscope-gpucheck --device-only --only intrinsic`: exit 124 (stopped: the time limit, a signal or a crash), " in md
    assert "### phase 4: generic kernel (32 chunks of 2^25 spread across 2^32): not run (budget)" in md
    docs = json.loads((tmp_path / "out" / "full.json").read_text())
    assert [d["only"] for d in docs] == ["mma", "histogram,unscale,scale", "intrinsic"]  # the killed phase's rows kept
