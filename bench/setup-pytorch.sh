#!/usr/bin/env bash
# Creates bench/.venv with PyTorch (CPU use) and numpy from PyPI, for the reference runs.
# Not used by CI or the tests. Usage: bench/setup-pytorch.sh
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet torch numpy
.venv/bin/python -c "import torch; print('torch', torch.__version__)"
