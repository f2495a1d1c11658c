#!/usr/bin/env bash
# The CUDA engine's one-shot check on a GPU host (issue 27): correctness against the CPU
# kernels, then this project's benchmark workloads on the GPU and the PyTorch reference on the
# same GPU, side by side. Sized for one run of about 8 minutes (a lent GPU: 15 minutes of device
# time in all, machine start included). Everything goes under $OUT (default ./cuda-check-out).
#
# Build here (no GPU needed), portable CPU target, stripped and gzipped (the carry limit):
#   RUSTFLAGS="-C target-cpu=x86-64-v3" cargo build --release --features cuda
#   strip -o target/plasticity-cuda target/release/plasticity && gzip -kf target/plasticity-cuda
# Optional, the GPU test binaries (each prints its own path last):
#   cargo test --release --features cuda -p plasticity-cuda --test gpu --no-run
#   cargo test --release --features cuda -p plasticity --test cuda --no-run
#   then strip + gzip them into target/cuda-tests/*.gz
# Run on the GPU host, from the repository root:
#   bench/cuda-device-check.sh [target/plasticity-cuda.gz]
# Environment: OUT, CUDA_LIB (default /usr/local/cuda-13.0/targets/x86_64-linux/lib, put on
# LD_LIBRARY_PATH for NVRTC), PYTHON (default python3; the reference needs torch with CUDA),
# EPISODES (timed steps per run, default 5), CPU_BASELINE=0 skips the CPU runs.
# Exit status: 0 when the check passes (the benchmarks' failures are recorded, not fatal).
set -uo pipefail
cd "$(dirname "$0")/.."
gz=${1:-target/plasticity-cuda.gz}
out=${OUT:-cuda-check-out}
mkdir -p "$out"
cuda_lib=${CUDA_LIB:-/usr/local/cuda-13.0/targets/x86_64-linux/lib}
export LD_LIBRARY_PATH="$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
py=${PYTHON:-python3}
episodes=${EPISODES:-5}
log="$out/log.txt"
: > "$log"
note() { echo "$*" | tee -a "$log"; }

# run NAME SECONDS CMD...: stdout to $out/NAME.out, stderr to $out/NAME.err, status and time
# to the log.
run() {
  local name=$1 secs=$2
  shift 2
  local start=$SECONDS
  timeout "$secs" "$@" > "$out/$name.out" 2> "$out/$name.err"
  local rc=$?
  note "$name: exit $rc, $((SECONDS - start)) s: $*"
  return $rc
}

bin=$(mktemp -d)/plasticity
gunzip -c "$gz" > "$bin" && chmod +x "$bin" || { note "cannot unpack $gz"; exit 2; }
note "host: $(hostname), $(nproc) cores, $(date -u +%FT%TZ)"
run nvidia-smi 20 nvidia-smi
run lib-search 10 sh -c "ls -l $cuda_lib/libnvrtc* /usr/lib/x86_64-linux-gnu/libcuda.so* /usr/lib64/libcuda.so* /usr/lib/libcuda.so* 2>&1"

# 1. Correctness: every setting on the GPU against the CPU kernels (the episode, and the device
# stepper of the agents' rollouts against the CPU stepper).
run check 180 "$bin" check --device cuda
check_rc=$?
cat "$out/check.out" "$out/check.err" >> "$log"

# 2. The GPU tests, when their binaries came along.
for t in target/cuda-tests/*.gz; do
  [ -e "$t" ] || continue
  name=$(basename "$t" .gz)
  gunzip -c "$t" > "$bin-$name" && chmod +x "$bin-$name"
  PLASTICITY_REQUIRE_CUDA=1 run "test-$name" 180 "$bin-$name" --test-threads 1
done

# 3. Benchmarks: this project on the GPU (and the CPU), then PyTorch on the GPU. maze-agent and
# cue-reward time the agents' whole update (rollout on the device stepper, replay, A2C).
workloads="pattern oja images maze maze-agent cue-reward pattern:16"
for w in $workloads; do
  workload=${w%%:*}
  batch=${w#*:}
  [ "$batch" = "$w" ] && batch=
  tag=${w/:/-b}
  run "bench-$tag-cuda" 120 "$bin" bench "$workload" --device cuda --episodes "$episodes" --json ${batch:+--batch $batch}
  if [ "${CPU_BASELINE:-1}" = 1 ]; then
    run "bench-$tag-cpu" 120 "$bin" bench "$workload" --device cpu --episodes 3 --json ${batch:+--batch $batch}
  fi
done
if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>> "$log"; then
  for w in $workloads; do
    workload=${w%%:*}
    batch=${w#*:}
    [ "$batch" = "$w" ] && batch=
    tag=${w/:/-b}
    run "torch-$tag-cuda" 180 "$py" bench/pytorch_reference.py --workload "$workload" --device cuda --episodes "$episodes" ${batch:+--batch $batch}
  done
else
  note "PyTorch with CUDA not available to $py: no reference runs"
fi

# 4. One table: ms per training step each side.
"$py" - "$out" <<'PY' > "$out/summary.md" 2>> "$log" || note "no summary (python3 missing?)"
import json, os, sys
out = sys.argv[1]
def ms(name):
    try:
        text = open(os.path.join(out, name + ".out")).read().strip().splitlines()
        return json.loads(text[-1])["ms_per_episode"]
    except Exception:
        return None
print("| workload | plasticity cuda ms | plasticity cpu ms | pytorch cuda ms | pytorch / ours (cuda) |")
print("|---|---|---|---|---|")
for tag in ["pattern", "oja", "images", "maze", "maze-agent", "cue-reward", "pattern-b16"]:
    ours, cpu, torch = ms(f"bench-{tag}-cuda"), ms(f"bench-{tag}-cpu"), ms(f"torch-{tag}-cuda")
    f = lambda v: "-" if v is None else f"{v:.2f}"
    ratio = f"{torch / ours:.1f}x" if ours and torch else "-"
    print(f"| {tag} | {f(ours)} | {f(cpu)} | {f(torch)} | {ratio} |")
PY
cat "$out/summary.md" 2>/dev/null | tee -a "$log"
exit $check_rc
