#!/usr/bin/env bash
# The main job on the shipped data: installs what is missing (tools/setup.sh), builds the fpscope
# command, then shows what casting the real gradients in datasets/lm-grads to each 16- and
# 8-bit format does to them (how many stay normal, go subnormal, vanish), and the formats'
# thresholds that explain it. Idempotent; reuses ./build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/tools/setup.sh" >&2
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "$(nproc 2>/dev/null || echo 2)" --target fpscope >/dev/null
fpscope="$here/build/tools/fpscope/fpscope"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== The formats (every figure computed by the emulator)"
"$fpscope" formats
grads="$here/datasets/lm-grads/step0300.npy"
echo
echo "== Gradients of a char-level transformer at step 300 (datasets/lm-grads), cast to each format"
for f in fp16 bf16 e5m2 e4m3; do
  "$fpscope" convert "$grads" --to "$f" -v -q -o "$out/$f.npy" | tail -n 1 | sed "s/^ */$f: /"
done
echo
echo "== The same gradients multiplied by 1024 first (loss scaling), then cast to fp16"
"$fpscope" convert "$grads" --to fp16 --scale 1024 -v -q -o "$out/fp16s.npy" | tail -n 1 | sed 's/^ */fp16 x1024: /'
echo
echo "== Why: a gradient of 1.2e-7 in fp16"
"$fpscope" cast 1.2e-7 --to fp16
