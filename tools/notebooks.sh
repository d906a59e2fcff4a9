#!/usr/bin/env bash
# Executes the teaching notebooks (notebooks/NN_*.py) and renders them to HTML in BUILD/notebooks/
# (BUILD defaults to build/; the Python module and the CLI must be built there first).
# Usage: tools/notebooks.sh [BUILD] [NAME ...]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build}
shift || true
exec "$here/.venv/bin/python" "$here/tools/notebooks.py" --build "$build" "$@"
