#!/usr/bin/env bash
# fpscope installed as an ML engineer installs it: `pip wheel <checkout>` (pyproject.toml) builds
# one wheel, installed with pip into two environments, in which ctest runs the Python tests
# with no PYTHONPATH and no build tree (tests/install/CMakeLists.txt):
#   pypi    .venv-pypi, a venv without system packages: PyPI's current torch (its wheel brings
#           CUDA libraries, about 5 GB, about a minute to fetch; the tests use the CPU), NumPy 2,
#           h5py, ml_dtypes. Kept between runs, to be shared with the tensor-core oracle
#           (MMA-Sim needs torch >= 2.7). FPSCOPE_PYPI_VENV overrides the path.
#   debian  BUILD/venv-debian, a venv over Debian's python3 and its packages (torch 1.13,
#           NumPy 1.24, h5py 3.7), as tools/setup.sh installs them. BUILD: the CMake build
#           directory, ./build unless given (install) or set as FPSCOPE_WHEEL_BUILD (ctest).
#
#   tools/wheel.sh install [BUILD]          make or update .venv-pypi, build the wheel
#                                           (BUILD/wheel), install it into both venvs
#   tools/wheel.sh pytest pypi|debian ARGS  pytest in that venv, from an empty directory
#
# The wheel's CMake build is kept in BUILD/wheel/cmake, so that a rerun rebuilds only what
# changed; with ccache (tools/test.sh gives the main build the same), the library and CLI
# objects come from the main build's. Without PyPI (no network) and no venv from before, both
# commands say SKIPPED and exit 77, which ctest reports as Skipped, not as a pass.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pypi=${FPSCOPE_PYPI_VENV:-$here/.venv-pypi}
build=${FPSCOPE_WHEEL_BUILD:-$here/build}  # the CMake build directory (ctest sets it)
# What .venv-pypi holds, with the bounds that matter: torch >= 2.7 (MMA-Sim), NumPy 2;
# scikit-build-core and pybind11 >= 2.12 (pyproject.toml's build requirements) build the wheel
# without build isolation, so with no fetch per run; the notebooks' kernel and plots; a pip
# that takes -C (config settings, pip >= 23.1: Debian's venv brings 23.0).
reqs=("pip>=23.1" "torch>=2.7" "numpy>=2" "h5py>=3.7" "ml_dtypes>=0.5" "pytest" "scikit-build-core>=0.10" "pybind11>=2.12"
      "ninja" "matplotlib" "nbformat" "nbclient" "nbconvert" "ipykernel")
# The tensor-core oracle (issue 17, tests/python/test_mma_oracle.py as install.pypi.mma): MMA-Sim,
# the models of fpscope::mma, validated on the hardware by its authors; it imports only with
# torch >= 2.7 (torch.float8_e8m0fnu), which is why it lives here.
reqs+=("mmasim==2.1.1")
# notebooks/06_nvfp4_training.py trains on scikit-learn's digits, as datasets/record_digits.py does.
reqs+=("scikit-learn")
stamp=$pypi/.fpscope-requirements

skip() { echo "wheel: SKIPPED: $*"; exit 77; }

# Is the package index reachable? pip itself asks it (as configured) for one small file.
reachable() {
  local tmp rc=0; tmp=$(mktemp -d)
  "$1" -m pip download -q --no-deps --timeout 20 -d "$tmp" iniconfig >/dev/null 2>&1 || rc=1
  rm -rf "$tmp"
  return $rc
}

pypi_environment() {
  if [ -x "$pypi/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${reqs[*]}" ]; then
    return 0  # as made before: no network needed
  fi
  [ -x "$pypi/bin/python" ] || /usr/bin/python3 -m venv "$pypi"
  echo "wheel: installing ${reqs[*]} into $pypi"
  if ! "$pypi/bin/python" -m pip install -q --disable-pip-version-check "${reqs[@]}"; then
    reachable "$pypi/bin/python" || skip "the package index is not reachable, and $pypi lacks ${reqs[*]}"
    echo "wheel: error: pip could not install ${reqs[*]} into $pypi" >&2
    exit 1
  fi
  echo "${reqs[*]}" >"$stamp"
}

venv_python() {
  case "$1" in
    pypi) echo "$pypi/bin/python" ;;
    debian) echo "$build/venv-debian/bin/python" ;;
    *) echo "wheel: error: no environment '$1' (pypi or debian)" >&2; exit 2 ;;
  esac
}

cmd=${1:-}
case "$cmd" in
  install)
    build=$(cd "${2:-$build}" && pwd)
    # First out with the last run's package, so that no test runs on it when this one fails or
    # is skipped.
    for env in pypi debian; do
      py=$(venv_python $env)
      [ ! -x "$py" ] || "$py" -m pip uninstall -q -y fpscope >/dev/null 2>&1 || true
    done
    pypi_environment
    t0=$SECONDS
    rm -rf "$build/wheel/dist"
    # `pip wheel .` with the build tools .venv-pypi has; warnings are errors, as in the CMake
    # build; ccache with absolute paths (no base dir), so that objects compiled from the same
    # sources with the same flags in the main build are hits here.
    # ccache hashes the compiler's name too, and the wheel's build would take Python's (sysconfig:
    # x86_64-linux-gnu-g++): the main build's compiler, then.
    args=(-C "build-dir=$build/wheel/cmake" -C cmake.define.FPSCOPE_WERROR=ON)
    if command -v ccache >/dev/null && [ "${FPSCOPE_CCACHE:-1}" != 0 ]; then
      args+=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache -C cmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache)
      export CCACHE_BASEDIR=
      cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
      [ -z "$cxx" ] || args+=(-C "cmake.define.CMAKE_CXX_COMPILER=$cxx")
    fi
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)} \
      "$pypi/bin/python" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps \
      "${args[@]}" -w "$build/wheel/dist" "$here"
    whl=$(ls "$build"/wheel/dist/fpscope-*.whl)
    echo "wheel: built $(basename "$whl") in $((SECONDS - t0)) s"
    # The same wheel in both: one module for NumPy 1 and 2. pip checks the wheel's dependencies
    # (numpy) against what each venv has, fetching nothing.
    [ -x "$build/venv-debian/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$build/venv-debian"
    for env in pypi debian; do
      py=$(venv_python $env)
      "$py" -m pip install -q --disable-pip-version-check --no-index "$whl"
      echo "wheel: $env: $("$py" -c 'import importlib.metadata as m, numpy, h5py
try:
    import torch; t = "torch " + torch.__version__
except ImportError:
    t = "no torch"
print("fpscope", m.version("fpscope"), "with", t + ", numpy", numpy.__version__ + ", h5py", h5py.__version__)')"
    done
    ;;
  pytest)
    py=$(venv_python "${2:-}")
    shift 2
    [ -x "$py" ] && "$py" -c 'import fpscope' 2>/dev/null ||
      skip "fpscope is not installed in $(dirname "$(dirname "$py")") (install.wheel did not run or was skipped)"
    # From an empty directory and without PYTHONPATH, so that `import fpscope` can only be the
    # installed package, never the checkout's lib/python or a build tree.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    cd "$tmp"
    env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 "$py" -m pytest -q -p no:cacheprovider "$@"
    ;;
  *)
    sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
