#!/usr/bin/env bash
# device-run.sh: the one command to run on a lent GPU machine (tools/gpucheck/README.md).
#
# From a prebuilt fpscope-gpucheck (the gpucheck-portable preset; the CUDA runtime is linked
# statically), it records the GPU, driver, MIG mode and host CPU; refuses, with an exit status of
# its own, a driver too old for the CUDA 13 runtime or a CPU without what the binary was compiled
# to need; then runs fpscope-gpucheck in phases, the least proven kernels first, inside a time
# budget, every row printed and saved as it finishes; and leaves OUT/PREFIX.md, a section that
# tools/gpucheck/RESULTS.md takes as it is, beside PREFIX.log and PREFIX.json.
#
# Without a GPU (no nvidia-smi) or with --dry-run it is a dry run: the driver and CPU checks run,
# each phase's command is run with a budget too small to start any check (proving the binary
# starts here and takes those options), and the exit status is 64, never 0 and never 77.
#
# The probes can be replaced for tests: GPUCHECK_NVIDIA_SMI (the nvidia-smi to call),
# GPUCHECK_CPUINFO (the file read for CPU flags), GPUCHECK_NEEDS (the binary's CPU needs);
# GPUCHECK_GRACE (seconds past the budget before a phase is stopped, default 60).
set -u -o pipefail

readonly EX_OK=0 EX_MISMATCH=1 EX_USAGE=2 EX_CUDA=3 EX_BUDGET=5
readonly EX_DRYRUN=64 EX_DRIVER=65 EX_CPU=66 EX_NOCUDA=67
# CUDA 13.0 needs an r580 driver (CUDA 13.0 release notes, table 3: >= 580.65.06 on Linux).
readonly MIN_DRIVER=580

usage() {
  cat <<'EOF'
Usage: tools/gpucheck/device-run.sh [--quick] [--dry-run] [--bin FILE] [--out DIR] [--prefix NAME]
                                    [--budget SECONDS]

  --quick           the tensor-core instructions (mma rows), every kernel and every conversion on 4 chunks of 2^25 inputs spread across
                    2^32, the scale-step host check: about a minute on an H100 host (budget 120 s)
  (default)         the full run: the mma rows, histogram, unscale and scale-step kernels and the 12 hardware
                    intrinsics on all 2^32 inputs, the 77 generic conversions on 32 chunks of 2^25
                    (a quarter of 2^32, spread), then the whole host side (budget 420 s; no check
                    starts after it, the run is stopped 60 s later: well under 8 minutes)
  --dry-run         check the driver and CPU and the phase commands, run nothing on a GPU
  --bin FILE        fpscope-gpucheck (default: build-portable/tools/gpucheck/, else build/...)
  --out DIR         where PREFIX.md/.log/.json go (default: $OUT if set, else build-gpucheck-run)
  --prefix NAME     file names (default: quick or full)
  --budget SECONDS  no check starts after this many seconds; the run is stopped 60 s after it

Exit status: 0 every phase ran and passed; 1 a mismatch; 2 usage (bad option, no binary);
3 a CUDA error, a crash or a phase stopped by the time limit; 5 the budget ran out first;
64 dry run (no GPU here, or --dry-run): checks passed, nothing ran on a GPU;
65 refused: the NVIDIA driver is too old (< 580 for CUDA 13) or unusable;
66 refused: this CPU lacks an instruction set the binary needs, or a shared library is missing;
67 nvidia-smi lists a GPU but CUDA finds none (MIG without an instance, CUDA_VISIBLE_DEVICES).
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
quick=0 dry=0 bin="" out="${OUT:-}" prefix="" budget=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --dry-run) dry=1 ;;
    --bin) bin="${2:-}"; shift ;;
    --out) out="${2:-}"; shift ;;
    --prefix) prefix="${2:-}"; shift ;;
    --budget) budget="${2:-}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "device-run.sh: error: unknown argument '$1' (see --help)" >&2; exit $EX_USAGE ;;
  esac
  shift
done
if [ -z "$bin" ]; then
  for b in "$root/build-portable/tools/gpucheck/fpscope-gpucheck" "$root/build/tools/gpucheck/fpscope-gpucheck"; do
    if [ -x "$b" ]; then bin=$b; break; fi
  done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "device-run.sh: error: no fpscope-gpucheck binary (${bin:-none found}); build it with" \
       "'cmake --preset gpucheck-portable && cmake --build --preset gpucheck-portable' or give --bin" >&2
  exit $EX_USAGE
fi
[ -n "$budget" ] || budget=$([ $quick = 1 ] && echo 120 || echo 420)
case "$budget" in
  ''|*[!0-9]*|0) echo "device-run.sh: error: --budget wants a positive whole number of seconds, not '$budget'" >&2
                 exit $EX_USAGE ;;
esac
[ -n "$prefix" ] || prefix=$([ $quick = 1 ] && echo quick || echo full)
case "$prefix" in
  *[!A-Za-z0-9._-]*|'') echo "device-run.sh: error: --prefix wants letters, digits, '.', '_', '-'" >&2; exit $EX_USAGE ;;
esac
[ -n "$out" ] || out="$root/build-gpucheck-run"
mkdir -p "$out" || { echo "device-run.sh: error: cannot create $out" >&2; exit $EX_USAGE; }
out=$(cd "$out" && pwd)

smi=${GPUCHECK_NVIDIA_SMI:-nvidia-smi}
cpuinfo=${GPUCHECK_CPUINFO:-/proc/cpuinfo}
needs=${GPUCHECK_NEEDS:-$(dirname "$bin")/fpscope-gpucheck.needs}
md="$out/$prefix.md" log="$out/$prefix.log" json="$out/$prefix.json"
rm -f "$md" "$log" "$json" "$out/$prefix-phase.json"
exec > >(tee -a "$log") 2>&1
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
say() { printf '%s\n' "$*"; }
md() { printf '%s\n' "$*" >> "$md"; }

# ---- what this machine is ----------------------------------------------------------------
cpu_model=$(grep -m1 '^model name' "$cpuinfo" 2>/dev/null | sed 's/^[^:]*: *//')
cpu_flags=" $(grep -m1 '^flags' "$cpuinfo" 2>/dev/null | sed 's/^[^:]*: *//') "
commit=$(cat "$(dirname "$bin")/fpscope-gpucheck.commit" 2>/dev/null || echo unknown)
gpu="" driver="" sm="" mig="" gpu_mem="" smi_error=""
if command -v "$smi" > /dev/null 2>&1; then
  if q=$("$smi" --query-gpu=name,driver_version,compute_cap,mig.mode.current,memory.total \
                --format=csv,noheader 2>&1); then
    IFS=',' read -r gpu driver sm mig gpu_mem <<< "$(printf '%s\n' "$q" | head -n1)"
    trim() { sed 's/^ *//; s/ *$//' <<< "$1"; }
    gpu=$(trim "$gpu") driver=$(trim "$driver") sm=$(trim "$sm") mig=$(trim "$mig") gpu_mem=$(trim "$gpu_mem")
  else
    smi_error=$(printf '%s' "$q" | head -n1)
  fi
fi

say "device-run.sh $([ $quick = 1 ] && echo --quick || echo full)$([ $dry = 1 ] && echo ' --dry-run'), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "host: ${cpu_model:-unknown CPU}, $(nproc 2>/dev/null || echo ?) CPUs, kernel $(uname -r)"
say "binary: $bin ($(stat -c %s "$bin") bytes), fpscope $commit"
say "gpu: ${gpu:-none} ${sm:+sm_${sm/./}} driver ${driver:-none} MIG ${mig:-n/a} ${gpu_mem}${smi_error:+ (nvidia-smi: $smi_error)}"
[ -n "$gpu" ] && "$smi" 2>&1 | head -n 20

# Written first: a run stopped at any point leaves a header that says what it was.
md "## ${gpu:-no GPU}${sm:+, sm_${sm/./}} — $(date -u +%Y-%m-%d)"
md ""
md "driver ${driver:-none}, MIG mode ${mig:-n/a}${gpu_mem:+, $gpu_mem}; host CPU: ${cpu_model:-unknown}, $(nproc 2>/dev/null || echo ?) CPUs"
md "fpscope $commit; binary $(basename "$bin") built for: $(grep -m1 'march' "$needs" 2>/dev/null | sed 's/.*(//; s/).*//' || echo unknown)"
md "command: tools/gpucheck/device-run.sh$([ $quick = 1 ] && echo ' --quick')$([ $dry = 1 ] && echo ' --dry-run') (budget ${budget} s); log $prefix.log, JSON $prefix.json"
md ""

refuse() {  # status, message
  say "device-run.sh: REFUSED: $2"
  md "**REFUSED** (exit $1): $2"
  exit "$1"
}

# ---- refusals: a driver too old, a CPU too small, a library missing -------------------------
if [ -n "$smi_error" ]; then
  refuse $EX_DRIVER "nvidia-smi is installed but fails ($smi_error): no usable NVIDIA driver"
fi
if [ -n "$driver" ]; then
  major=${driver%%.*}
  case "$major" in
    ''|*[!0-9]*) refuse $EX_DRIVER "cannot read the driver version '$driver' from nvidia-smi" ;;
  esac
  if [ "$major" -lt $MIN_DRIVER ]; then
    refuse $EX_DRIVER "NVIDIA driver $driver is older than $MIN_DRIVER, which the CUDA 13 runtime in the binary needs (it would report no device)"
  fi
  say "driver: $driver >= $MIN_DRIVER: ok"
fi
if [ ! -r "$needs" ]; then
  refuse $EX_CPU "cannot tell what the binary needs: no $needs (built without tools/gpucheck/CMakeLists.txt?)"
fi
missing=""
while read -r f; do
  case "$f" in ''|'#'*) continue ;; esac
  case "$cpu_flags" in *" $f "*) ;; *) missing="$missing $f" ;; esac
done < "$needs"
if [ -n "$missing" ]; then
  refuse $EX_CPU "this CPU (${cpu_model:-unknown}) lacks${missing}, which $(basename "$bin") was compiled to need ($(grep -m1 march "$needs" | sed 's/.*(//; s/).*//')); build it with the gpucheck-portable preset"
fi
say "cpu: every flag the binary needs is here ($(grep -vc '^#' "$needs") flags): ok"
if command -v ldd > /dev/null 2>&1; then
  libs=$(ldd "$bin" 2>&1 | grep -E 'not found|version .* not found' || true)
  [ -z "$libs" ] || refuse $EX_CPU "the binary cannot load here: $(printf '%s' "$libs" | tr '\n' ';')"
  say "libraries: all found: ok"
fi

# ---- the phases, least proven first --------------------------------------------------------
# Each: a title and fpscope-gpucheck's arguments.
if [ $quick = 1 ]; then
  titles=("tensor-core instructions (mma.sync, wgmma)" "histogram, unscale, scale step (4 chunks)"
          "hardware intrinsics (4 chunks)" "generic kernel (4 chunks)" "host side: scale step")
  args=("--device-only --only mma"
        "--device-only --only histogram,unscale,scale --device-chunks 4"
        "--device-only --only intrinsic --device-chunks 4"
        "--device-only --only generic --device-chunks 4"
        "--host-only --only scale")
else
  titles=("tensor-core instructions (mma.sync, wgmma)" "histogram, unscale, scale step (all 2^32)"
          "hardware intrinsics (all 2^32)" "generic kernel (32 chunks of 2^25 spread across 2^32)" "host side (whole)")
  args=("--device-only --only mma"
        "--device-only --only histogram,unscale,scale"
        "--device-only --only intrinsic"
        "--device-only --only generic --device-chunks 32"
        "--host-only")
fi
datasets="$root/datasets/lm-grads"

if [ $dry = 1 ] || [ -z "$gpu" ]; then
  why=$([ -z "$gpu" ] && echo "no GPU here: no $smi" || echo "--dry-run")
  say "DRY RUN ($why): each phase's command with a budget too small to start a check"
  md "**DRY RUN** (exit $EX_DRYRUN): $why; driver and CPU checks passed; nothing ran on a GPU."
  md ""
  for i in "${!args[@]}"; do
    # shellcheck disable=SC2086  # the arguments are words
    "$bin" ${args[$i]} --datasets "$datasets" --budget 1e-9 > "$out/$prefix-dry.txt" 2>&1
    rc=$?
    # 77: no device (device phases here); 5: nothing started within the budget.
    case $rc in
      5|77) say "phase $((i + 1)) ok (exit $rc): ${titles[$i]}: fpscope-gpucheck ${args[$i]}"
            md "- phase $((i + 1)), ${titles[$i]}: \`fpscope-gpucheck ${args[$i]}\` (checked: exit $rc)" ;;
      *) cat "$out/$prefix-dry.txt"; rm -f "$out/$prefix-dry.txt"
         say "device-run.sh: error: phase $((i + 1)) command failed here (exit $rc): ${args[$i]}"
         md "phase $((i + 1)) command failed (exit $rc)"; exit $EX_USAGE ;;
    esac
  done
  rm -f "$out/$prefix-dry.txt"
  say "DRY RUN: exit $EX_DRYRUN (nothing ran on a GPU)"
  exit $EX_DRYRUN
fi

# Folds a phase's JSON document into PREFIX.json, an array of them.
fold_json() {
  [ -s "$1" ] || return 0
  if [ -s "$json" ]; then
    { head -n -1 "$json"; echo ','; cat "$1"; echo ']'; } > "$json.tmp"
  else
    { echo '['; cat "$1"; echo ']'; } > "$json.tmp"
  fi
  mv "$json.tmp" "$json" && rm -f "$1"
}

status=$EX_OK
worst() {  # keeps the most serious status: a mismatch, then a failure, then the rest
  local new=$1
  for s in $EX_MISMATCH $EX_CUDA $EX_DRIVER $EX_NOCUDA $EX_BUDGET; do
    if [ "$status" = "$s" ]; then return; fi
    if [ "$new" = "$s" ]; then status=$new; return; fi
  done
}
for i in "${!args[@]}"; do
  left=$(( budget - $(elapsed) ))
  title="phase $((i + 1)): ${titles[$i]}"
  if [ $left -le 0 ]; then
    say "$title: not run (budget)"
    md "### $title: not run (budget)"
    md ""
    worst $EX_BUDGET
    continue
  fi
  say "$title: fpscope-gpucheck ${args[$i]} (budget $left s)"
  t0=$(date +%s)
  # The row lines go to the log as they come (gpucheck flushes each); the JSON file is
  # rewritten after each row. timeout stops a phase that outruns the budget by 60 s.
  # shellcheck disable=SC2086
  timeout --kill-after=10 $(( left + ${GPUCHECK_GRACE:-60} )) "$bin" ${args[$i]} --datasets "$datasets" --budget "$left" \
      --json-out "$out/$prefix-phase.json" | tee "$out/$prefix-rows.txt"
  rc=${PIPESTATUS[0]}
  stopped=""
  if [ "$rc" -ge 124 ] && [ "$rc" != 77 ]; then stopped=" (stopped: the time limit, a signal or a crash)"; fi
  md "### $title"
  md ""
  md "\`fpscope-gpucheck ${args[$i]}\`: exit $rc$stopped, $(( $(date +%s) - t0 )) s"
  md ""
  md '```'
  cat "$out/$prefix-rows.txt" >> "$md"
  md '```'
  md ""
  rm -f "$out/$prefix-rows.txt"
  fold_json "$out/$prefix-phase.json"
  case $rc in
    0) ;;
    1) worst $EX_MISMATCH ;;
    5) worst $EX_BUDGET ;;
    4) worst $EX_DRIVER ;;
    77) worst $EX_NOCUDA ;;
    *) worst $EX_CUDA ;;
  esac
  # No device for CUDA although nvidia-smi lists one, or the driver refused: the rest would say
  # the same.
  if [ "$rc" = 77 ] || [ "$rc" = 4 ]; then
    say "device-run.sh: CUDA finds no usable device (exit $rc) although nvidia-smi lists '$gpu': stopping"
    break
  fi
done

case $status in
  0) verdict="PASS: every phase ran, 0 mismatches" ;;
  1) verdict="MISMATCH: see the rows above (a finding, not a flake)" ;;
  3) verdict="CUDA ERROR or a phase stopped: see the log" ;;
  5) verdict="INCOMPLETE: the budget ran out; rows not run are listed" ;;
  65) verdict="DRIVER: CUDA reported the driver too old or the device unusable" ;;
  67) verdict="NO CUDA DEVICE although nvidia-smi lists one (MIG mode ${mig:-n/a}; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset})" ;;
  *) verdict="exit $status" ;;
esac
md "result: $verdict (exit $status, $(elapsed) s)"
say "device-run.sh: $verdict (exit $status, $(elapsed) s); results in $md"
exit "$status"
