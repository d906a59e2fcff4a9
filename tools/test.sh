#!/usr/bin/env bash
# Builds fpscope and runs every test: installs what is missing (tools/setup.sh), configures with
# warnings as errors, builds, and runs ctest. Idempotent; reuses ./build between runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
"$here/tools/setup.sh"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DFPSCOPE_WERROR=ON
cmake --build "$here/build" -j "$jobs"
ctest --test-dir "$here/build" --output-on-failure -j "$jobs" "$@"
