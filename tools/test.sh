#!/usr/bin/env bash
# Builds fpscope and runs every test: installs what is missing (tools/setup.sh), configures with
# warnings as errors, builds, and runs ctest, whose install.* tests also build the wheel and
# test it in a PyPI and a Debian venv (tools/wheel.sh; .venv-pypi is kept between runs).
# Idempotent; reuses ./build between runs.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
"$here/tools/setup.sh"
# ccache where there is one (tools/setup.sh installs it; FPSCOPE_CCACHE=0 goes without): a rerun
# recompiles only what changed, and the wheel's build (tests/install, tools/wheel.sh) gets the
# library and CLI objects from this one. Absolute paths (no base dir) so that the two builds'
# compile commands are the same.
launch=()
if command -v ccache >/dev/null && [ "${FPSCOPE_CCACHE:-1}" != 0 ]; then
  export CCACHE_BASEDIR=
  launch=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DFPSCOPE_WERROR=ON "${launch[@]}"
cmake --build "$here/build" -j "$jobs"
ctest --test-dir "$here/build" --output-on-failure -j "$jobs" "$@"
