#!/usr/bin/env bash
# Builds the fake driver (fake_cuda.cpp: episode.cu's kernels run on the CPU behind the CUDA
# driver's API) and runs the CUDA engine's GPU-vs-CPU tests against it: tests/gpu.rs with the small
# settings, and crates/plasticity/tests/cuda.rs (the episode ops with the engine selected).
# Needs g++ (C++20) and NVRTC (the engine compiles its PTX first, as on a GPU; the fake ignores
# it): set VIRTUAL_ENV or PLASTICITY_LIBNVRTC as for tests/ptx.rs. Not a GPU measurement.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
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
