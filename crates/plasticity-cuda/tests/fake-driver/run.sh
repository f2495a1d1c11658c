#!/usr/bin/env bash
# Builds the fake driver (fake_cuda.cpp: episode.cu's kernels run on the CPU behind the CUDA
# driver's API) and runs the CUDA engine's GPU-vs-CPU tests against it: tests/gpu.rs with the small
# settings (the episode and the device stepper), and crates/plasticity/tests/cuda.rs (the episode
# ops and the agents' rollouts with the engine selected).
# Needs g++ (C++20) and NVRTC (the engine compiles its PTX first, as on a GPU; the fake ignores
# it): set VIRTUAL_ENV or PLASTICITY_LIBNVRTC as for tests/ptx.rs. Not a GPU measurement.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# cargo runs each test binary in its package's directory: a relative VIRTUAL_ENV is made absolute
# here, from where the script was started.
if [ -n "${VIRTUAL_ENV:-}" ]; then VIRTUAL_ENV=$(realpath "$VIRTUAL_ENV"); export VIRTUAL_ENV; fi
build=${TMPDIR:-/tmp}/plasticity-fake-cuda
mkdir -p "$build"
g++ -std=c++20 -O2 -shared -fPIC -pthread -Wl,-soname,libcuda.so.1 \
  -o "$build/libcuda.so.1" "$here/fake_cuda.cpp"
cd "$here/../../../.."
PLASTICITY_LIBCUDA="$build/libcuda.so.1" PLASTICITY_CHECK_MAX_NEURONS=${PLASTICITY_CHECK_MAX_NEURONS:-16} \
  PLASTICITY_REQUIRE_CUDA=1 cargo test --release -p plasticity-cuda --test gpu -- --nocapture --test-threads 1 "$@"
# The episode ops through burn's autodiff with the engine selected (what --device cuda does).
PLASTICITY_LIBCUDA="$build/libcuda.so.1" PLASTICITY_REQUIRE_CUDA=1 \
  cargo test --release --features cuda -p plasticity --test cuda -- --nocapture
# The command line end to end: `--device cuda` runs of pattern (decaying Hebb), maze and cue-reward
# (the agents: retroactive neuromodulation, and simple with fan-out; their rollouts on the device
# stepper, their replays on the device episode) must write the same metrics as the CPU runs of the
# same seed (loss and metric of every update within 1e-4 relative).
cargo build --release --features cuda --bin plasticity
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
compare() { # name, then the training options
  local name=$1; shift
  target/release/plasticity "$@" --seed 1 --threads 2 --out "$runs/$name-cpu" 2>/dev/null
  PLASTICITY_LIBCUDA="$build/libcuda.so.1" \
    target/release/plasticity "$@" --seed 1 --threads 2 --device cuda --out "$runs/$name-cuda" 2>/dev/null
  paste -d, <(cut -d, -f1-3 "$runs/$name-cpu/metrics.csv") <(cut -d, -f1-3 "$runs/$name-cuda/metrics.csv") |
    awk -F, -v name="$name" '
      NR == 1 { next }
      { for (k = 2; k <= 3; k++) { d = $k - $(k + 3); if (d < 0) d = -d; a = $k < 0 ? -$k : $k
          if (d > 1e-4 * (1 + a)) { printf "%s: update %s: column %d: cpu %s, cuda %s\n", name, $1, k, $k, $(k + 3); bad = 1 } } }
      END { if (NR < 2) { print name ": no metrics"; exit 1 }
            if (bad) exit 1; printf "%s: --device cuda equals the CPU run (%d updates)\n", name, NR - 1 }'
}
compare pattern pattern --bits 16 --patterns 2 --updates 3
compare maze maze --neurons 12 --steps 12 --batch 2 --size 5 --updates 3
compare cue-reward cue-reward --neurons 12 --steps 12 --batch 2 --updates 3
compare cue-reward-modplast cue-reward --model modplast --fan-out --neurons 12 --steps 12 --batch 2 --updates 3
# A driver error in the middle of a rollout (the stand-in fails its 5th launch and every later one)
# ends the run with the driver's message and a non-zero status, not a panic.
status=0
PLASTICITY_LIBCUDA="$build/libcuda.so.1" FAKE_CUDA_FAIL_LAUNCH=5 target/release/plasticity maze \
  --neurons 12 --steps 12 --batch 2 --size 5 --updates 1 --device cuda --out "$runs/fail" 2> "$runs/fail.err" || status=$?
if [ "$status" != 1 ]; then
  echo "maze with a failing driver: exit $status, not 1 (a failed update)"; cat "$runs/fail.err"; exit 1
fi
if grep -q panicked "$runs/fail.err" || ! grep -q "rollout failed: CUDA driver" "$runs/fail.err"; then
  echo "maze with a failing driver: no clear message:"; cat "$runs/fail.err"; exit 1
fi
echo "maze with a failing driver: $(grep -o 'the rollout failed.*' "$runs/fail.err" | head -1)"
