#!/usr/bin/env bash
# Installs what fpscope needs to build and test, idempotently: only missing Debian packages are
# installed (apt-get), and PyPI packages Debian lacks go into .venv, a venv over Debian's python3
# (--system-site-packages, so Debian's numpy/torch/h5py are used as they are).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

debs=(build-essential cmake pkg-config git
      libboost-dev libfmt-dev libhdf5-dev hdf5-tools catch2 libcli11-dev nlohmann-json3-dev
      libgomp1 pybind11-dev python3-dev python3-venv python3-pip
      python3-numpy python3-pytest python3-torch python3-h5py python3-sklearn libcairo2-dev
      python3-matplotlib python3-nbformat python3-nbclient python3-ipykernel python3-nbconvert)
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
pypi=(ml_dtypes==0.5.4)
venv="$here/.venv"
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
for spec in "${pypi[@]}"; do
  name=${spec%%==*}; want=${spec##*==}
  have=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)
  [ "$have" = "$want" ] || "$venv/bin/pip" install -q --no-deps "$spec"
done
echo "setup: ok ($(cmake --version | head -1), python $("$venv/bin/python" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)'))"
