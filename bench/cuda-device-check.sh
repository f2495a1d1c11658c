#!/usr/bin/env bash
# The CUDA engine's one-shot check on a GPU host (issue 27): correctness against the CPU
# kernels, then this project's benchmark workloads on the GPU and the PyTorch reference on the
# same GPU, side by side. Sized for one run of about 8 minutes without PARTS "extra" (a lent GPU: 15 minutes of device
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
# EPISODES (timed steps per run, default 5), CPU_BASELINE=0 skips the CPU runs, PARTS (the parts
# to run, default "check tests bench extra": about 8 minutes without "extra", which adds up to 10
# more; with one lent GPU of 15 minutes, run PARTS="check tests bench" first, then "extra").
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
parts=${PARTS-check tests bench extra}
want() { case " $parts " in *" $1 "*) return 0 ;; esac; return 1; }

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
check_rc=0
if want check; then
  run check 180 "$bin" check --device cuda
  check_rc=$?
  cat "$out/check.out" "$out/check.err" >> "$log"
fi

# 2. The GPU tests, when their binaries came along.
for t in target/cuda-tests/*.gz; do
  want tests && [ -e "$t" ] || continue
  name=$(basename "$t" .gz)
  gunzip -c "$t" > "$bin-$name" && chmod +x "$bin-$name"
  PLASTICITY_REQUIRE_CUDA=1 run "test-$name" 180 "$bin-$name" --test-threads 1
done

# 3. Benchmarks (step 5 below adds B = 64, torch.compile and N = 16,383): this project on the GPU (and the CPU), then PyTorch on the GPU. maze-agent and
# cue-reward time the agents' whole update (rollout on the device stepper, replay, A2C).
workloads="pattern oja images maze maze-agent cue-reward pattern:16"
want bench || workloads=
for w in $workloads; do
  workload=${w%%:*}
  batch=${w#*:}
  [ "$batch" = "$w" ] && batch=
  tag=${w/:/-b}
  run "bench-$tag-cuda" 120 "$bin" bench "$workload" --device cuda --updates "$episodes" --json ${batch:+--batch $batch}
  if [ "${CPU_BASELINE:-1}" = 1 ]; then
    run "bench-$tag-cpu" 120 "$bin" bench "$workload" --device cpu --updates 3 --json ${batch:+--batch $batch}
  fi
done
if [ -n "$workloads" ] && "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>> "$log"; then
  for w in $workloads; do
    workload=${w%%:*}
    batch=${w#*:}
    [ "$batch" = "$w" ] && batch=
    tag=${w/:/-b}
    run "torch-$tag-cuda" 180 "$py" bench/pytorch_reference.py --workload "$workload" --device cuda --episodes "$episodes" ${batch:+--batch $batch}
  done
elif [ -n "$workloads" ]; then
  note "PyTorch with CUDA not available to $py: no reference runs"
fi

# 4. One table: ms per training step each side.
"$py" - "$out" <<'PY' > "$out/summary.md" 2>> "$log" || note "no summary (python3 missing?)"
import json, os, sys
out = sys.argv[1]
def ms(name):
    try:
        text = open(os.path.join(out, name + ".out")).read().strip().splitlines()
        return json.loads(text[-1])["ms_per_update"]
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

# 5. The issue's other targets, last, so that a time-out here leaves the table above: pattern at
# B = 64 (ours and PyTorch's bmm form), PyTorch's torch.compile on pattern (the compile is in its
# first_step_ms), and a pattern network of N = 16,383 (16,382 bits) trained for 2 updates on the
# GPU with the GPU's peak memory; PyTorch's formulation keeps T x N^2 values per step for its
# backward and is expected to fail at that size (its error is recorded).
# gpu_peak NAME SECONDS CMD...: `run`, polling the GPU's used memory once a second into NAME.gpu.
gpu_peak() {
  local name=$1
  ( peak=0; while sleep 1; do
      m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
      [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m && echo "$peak" > "$out/$name.gpu"
    done ) &
  local poller=$!
  run "$@"
  local rc=$?
  kill "$poller" 2>/dev/null
  note "$name: GPU memory peak $(cat "$out/$name.gpu" 2>/dev/null || echo '?') MiB"
  return $rc
}
want extra || exit $check_rc
gpu_peak bench-pattern-b64-cuda 150 "$bin" bench pattern --device cuda --batch 64 --episodes 3 --json
gpu_peak pattern-n16383-cuda 300 "$bin" pattern --bits 16382 --updates 2 --device cuda \
  --out "$out/pattern-n16383" --progress-every 5
if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>> "$log"; then
  gpu_peak torch-pattern-b64-cuda 240 "$py" bench/pytorch_reference.py --workload pattern --device cuda --episodes 3 --batch 64
  run torch-pattern-compile-cuda 360 "$py" bench/pytorch_reference.py --workload pattern --device cuda --episodes "$episodes" --compile
  gpu_peak torch-pattern-n16383-cuda 120 "$py" bench/pytorch_reference.py --workload pattern --device cuda --episodes 1 --neurons 16383
fi
for name in bench-pattern-b64-cuda torch-pattern-b64-cuda torch-pattern-compile-cuda torch-pattern-n16383-cuda; do
  note "$name: $(tail -1 "$out/$name.out" 2>/dev/null) $(tail -1 "$out/$name.err" 2>/dev/null)"
done
note "pattern-n16383-cuda: $(tail -2 "$out/pattern-n16383-cuda.err" 2>/dev/null)"
exit $check_rc
