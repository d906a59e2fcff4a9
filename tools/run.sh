#!/usr/bin/env bash
# The main job on the shipped data: installs what is missing (tools/setup.sh), builds the fpscope
# command, then shows what casting the real gradients in datasets/lm-grads to each 16- and
# 8-bit format does to them (how many stay normal, go subnormal, vanish, overflow, at which loss
# scale), and the thresholds that explain it. Idempotent; reuses ./build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/tools/setup.sh" >&2
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "$(nproc 2>/dev/null || echo 2)" --target fpscope >/dev/null
fpscope="$here/build/tools/fpscope/fpscope"

echo "== The formats (every figure computed by the emulator)"
"$fpscope" formats
grads="$here/datasets/lm-grads/step0300.npy"
echo
echo "== Gradients of a char-level transformer at step 300 (datasets/lm-grads): what casting them"
echo "   to each format loses at scale 1 and at 2^10, and the scales to use instead"
"$fpscope" hist "$grads" --scales 1,2^10 --view-scale 1
echo
echo "== A loss-scale sweep over all four recorded steps together, fp16 only"
"$fpscope" hist "$here"/datasets/lm-grads/step*.npy -f fp16 -s 2^0:2^24:4 --no-picture
echo
echo "== A real training run's recorded gradients (datasets/traces/digits-mlp.h5) replayed through"
echo "   torch's GradScaler started at 2^24: which steps it skips, and which tensors overflowed"
"$fpscope" replay "$here/datasets/traces/digits-mlp.h5" -P torch:init=2^24,interval=50 --steps :200
echo
echo "== Why: a gradient of 1.2e-7 in fp16"
"$fpscope" cast 1.2e-7 --to fp16
