#!/usr/bin/env bash
# Installs what fpscope needs to build and test, idempotently: only missing Debian packages are
# installed (apt-get), and PyPI packages Debian lacks go into .venv, a venv over Debian's python3
# (--system-site-packages, so Debian's numpy/torch/h5py are used as they are).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

debs=(build-essential cmake pkg-config git ccache
      libboost-dev libfmt-dev libhdf5-dev zlib1g-dev libdeflate-dev hdf5-tools catch2 libcli11-dev nlohmann-json3-dev
      libgomp1 pybind11-dev python3-dev python3-venv python3-pip
      python3-numpy python3-pytest python3-torch python3-h5py python3-sklearn libcairo2-dev
      python3-matplotlib python3-nbformat python3-nbclient python3-ipykernel python3-nbconvert)
debs+=(gdb)  # tests/hostile/test_in_trace_race.py stops a trace reader between its check and its open
# MPI (issue 18): `fpscope replay --mpi` and its tests (optional at configure time).
debs+=(openmpi-bin libopenmpi-dev)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI extras, pinned; --no-deps so pip never replaces Debian's numpy (torch 1.13 needs numpy 1.x).
# pybind11 >= 2.12 builds a module that reads NumPy 1 and 2 arrays (Debian 12's 2.10 reads only
# NumPy 1's; lib/python/CMakeLists.txt takes this one first, Debian's where it is missing).
pypi=(ml_dtypes==0.5.4 pybind11==3.1.0)
# gfloat, the OCP MX block-encoding oracle of tests/python/test_block_quant.py (issue 16), with
# its two dependencies (checked with NumPy 1.24: it needs nothing newer).
pypi+=(gfloat==0.5.2 array-api-compat==1.16.0 more-itertools==11.2.1)
venv="$here/.venv"
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
for spec in "${pypi[@]}"; do
  name=${spec%%==*}; want=${spec##*==}
  have=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  [ "$have" = "$want" ] || "$venv/bin/pip" install -q --no-deps "$spec"
done
# Berkeley SoftFloat 3e, the fp16 fma / IEEE-flags oracle of tests/oracle (Debian has none): the
# static x86-64 library and headers that PyPI's sfpy 0.6.0 source release ships, checksummed,
# into .deps/softfloat. Without it (no network) the oracle.softfloat.* tests report Skipped.
sf="$here/.deps/softfloat"
if [ ! -f "$sf/lib/softfloat.a" ] && [ "$(uname -m)" = x86_64 ]; then
  tmp=$(mktemp -d)
  if "$venv/bin/pip" download -q --no-deps --no-binary :all: sfpy==0.6.0 -d "$tmp" 2>/dev/null &&
     echo "b9e6643dbc51d0c091fb6a0cf998612adf6c45be8ea699fe7af53abb91d194ca  $tmp/sfpy-0.6.0.tar.gz" | sha256sum -c --quiet -; then
    tar xzf "$tmp/sfpy-0.6.0.tar.gz" -C "$tmp"
    mkdir -p "$sf/lib" "$sf/include"
    cp "$tmp/sfpy-0.6.0/sfpy/lib/softfloat.a" "$sf/lib/"
    cp "$tmp/sfpy-0.6.0/sfpy/include/softfloat.h" "$tmp/sfpy-0.6.0/sfpy/include/softfloat_types.h" "$sf/include/"
  else
    echo "setup: could not fetch SoftFloat (sfpy 0.6.0 from PyPI); oracle.softfloat.* will report Skipped"
  fi
  rm -rf "$tmp"
fi
echo "setup: ok ($(cmake --version | head -1), python $("$venv/bin/python" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)'))"
