#!/usr/bin/env bash
# Creates bench/.venv with PyTorch and numpy from PyPI, for the reference runs (bench/compare.sh,
# bench/pytorch_*.py). Not used by CI or the tests. Idempotent: a venv that already imports torch
# and numpy is left as it is (FORCE=1 reinstalls).
#
# Usage: bench/setup-pytorch.sh
# Environment: PYTHON3 (default python3); TORCH_INDEX_URL, an extra index for torch, e.g.
# https://download.pytorch.org/whl/cpu for the CPU-only wheel (~200 MB) where that host is
# reachable. Plain PyPI's Linux wheel bundles the CUDA libraries: about 5.5 GB installed, which
# also serves the GPU runs (DEVICE=wgpu bench/compare.sh, TORCH_DEVICE=cuda).
set -euo pipefail
cd "$(dirname "$0")"
py=.venv/bin/python
if [ -z "${FORCE:-}" ] && [ -x "$py" ] && "$py" -c "import torch, numpy" 2>/dev/null; then
  "$py" -c "import torch; print('torch', torch.__version__, '(already installed in bench/.venv)')"
  exit 0
fi
avail_kb=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${avail_kb:-0}" -lt $((7 * 1024 * 1024)) ] && [ -z "${TORCH_INDEX_URL:-}" ]; then
  echo "warning: $((avail_kb / 1024 / 1024)) GB free here; PyPI's torch needs about 6 GB" >&2
fi
[ -x "$py" ] || "${PYTHON3:-python3}" -m venv .venv
"$py" -m pip install --quiet --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$py" -m pip install --quiet torch --index-url "$TORCH_INDEX_URL"
fi
"$py" -m pip install --quiet torch numpy
"$py" -c "import torch; print('torch', torch.__version__)"
