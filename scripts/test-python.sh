#!/usr/bin/env bash
# The Python package's tests (docs/python.md): in a virtual environment under target/, installs
# torch, numpy, pytest and maturin from PyPI (once; ~70 s and 5.4 GB the first time, torch from
# PyPI being the CUDA build), builds and installs the package with `pip install .` (as a user
# would), checks that `maturin build --release` makes an abi3 wheel, and runs pytest.
#
# It fails, loudly, when it cannot: no python3 with venv, or PyPI unreachable. CI runs it
# (.ci/run) through the README's test command.
#
#   scripts/test-python.sh                # all of it
#   scripts/test-python.sh -k gradcheck   # arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=target/python-venv
fail() { echo "test-python: $*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || fail "$python not found: install Python 3.9 or later"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || fail "cannot create a virtual environment with $python -m venv \
(Debian: apt-get install python3-venv)"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
if ! "$venv/bin/python" -c "import torch, numpy, pytest, maturin" >/dev/null 2>&1; then
  echo "test-python: installing torch, numpy, pytest and maturin into $venv"
  start=$SECONDS
  "${pip[@]}" install --quiet torch numpy pytest maturin \
    || fail "could not install torch, numpy, pytest, maturin from PyPI into $venv"
  echo "test-python: installed in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
fi

echo "test-python: pip install ."
"${pip[@]}" install --quiet --no-deps --force-reinstall . || fail "pip install . failed"

echo "test-python: maturin build --release (abi3 wheel)"
rm -rf target/wheels
"$venv/bin/maturin" build --release --quiet --out target/wheels >/dev/null 2>&1 \
  || "$venv/bin/maturin" build --release --out target/wheels || fail "maturin build failed"
ls target/wheels/plasticity-*-cp39-abi3-*.whl >/dev/null 2>&1 \
  || fail "expected an abi3 wheel (cp39-abi3) in target/wheels, got: $(ls target/wheels)"

echo "test-python: scripts/test_svg_curves.py (the docs figures' digitiser)"
python3 scripts/test_svg_curves.py || fail "scripts/test_svg_curves.py failed"

# From outside the source tree, so that the installed package is the one tested.
cd python/tests
exec "../../$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" .
