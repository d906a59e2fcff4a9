#!/bin/sh
# check_portable.sh BIN MARCH: the fpscope-gpucheck to carry to a GPU machine (the
# gpucheck-portable preset) runs here, needs no CPU feature above MARCH, no libstdc++ of this
# machine, keeps the run-time dispatched F16C and AVX512-BF16 paths (their instructions are in
# the binary, only inside the dispatched functions), and leaves room under the device tool's
# 64 MiB carry limit (working tree plus carried paths).
set -eu
bin=$1 march=$2
dir=$(dirname "$bin")
fail() { echo "check_portable: FAIL: $*" >&2; exit 1; }

"$bin" --host-only --only scale > /dev/null || fail "the binary does not pass --host-only --only scale here"
set +e
"$bin" --device-only --only unscale --budget 1e-9 > /dev/null
rc=$?
set -e
[ $rc = 77 ] || [ $rc = 5 ] || fail "--device-only exits $rc here (77 without a device, 5 with one)"
echo "runs here: ok"

grep -q -- "-march=$march)" "$dir/fpscope-gpucheck.needs" || fail "fpscope-gpucheck.needs is not for -march=$march"
if grep -q '^avx512' "$dir/fpscope-gpucheck.needs"; then fail "needs AVX-512: $(grep '^avx512' "$dir/fpscope-gpucheck.needs" | tr '\n' ' ')"; fi
echo "needs ($(grep -vc '^#' "$dir/fpscope-gpucheck.needs") CPU flags, no AVX-512): ok"

if ldd "$bin" | grep -E 'libstdc\+\+|libgcc_s'; then fail "linked against this machine's libstdc++/libgcc_s"; fi
echo "libraries: $(ldd "$bin" | awk '{print $1}' | tr '\n' ' ')"

size=$(stat -c %s "$bin")
[ "$size" -lt $((40 * 1024 * 1024)) ] || fail "$size bytes: too big to carry beside the working tree (64 MiB in all)"
echo "size: $size bytes (< 40 MiB): ok"

# AVX-512 instructions (zmm registers or opmask registers) outside the functions that are taken
# only after cpuid says yes would die of SIGILL on an AVX2-only host. Those functions: the
# AVX512-BF16 conversion (lib/src/convert_hw.cpp) and the AMD tensor-core kernels'
# target("avx512f") tiles, run only where __builtin_cpu_supports("avx512f") (lib/src/mma_amd.cpp
# gemm_fast).
objdump -d --no-show-raw-insn -C "$bin" | awk '
  /^[0-9a-f]+ <.*>:$/ { fn = $0; next }
  /%zmm|%k[1-7]/ { print fn }' | sort | uniq -c > "$dir/avx512-functions.txt"
outside=$(grep -v -E 'bf16_rne|bf16_16|fpscope::mma::amd::\(anonymous namespace\)::tile_' "$dir/avx512-functions.txt" || true)
[ -z "$outside" ] || fail "AVX-512 instructions outside the dispatched functions: $outside"
grep -q bf16_rne "$dir/avx512-functions.txt" || fail "the dispatched AVX512-BF16 path is missing"
objdump -d --no-show-raw-insn "$bin" | grep -q vcvtneps2bf16 || fail "no vcvtneps2bf16 in the binary"
objdump -d --no-show-raw-insn "$bin" | grep -q vcvtps2ph || fail "no vcvtps2ph (F16C) in the binary"
echo "AVX-512 only in the dispatched functions ($(wc -l < "$dir/avx512-functions.txt")); vcvtneps2bf16 and vcvtps2ph present: ok"
