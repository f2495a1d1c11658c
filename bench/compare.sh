#!/usr/bin/env bash
# Runs the benchmark workloads in this project and in the PyTorch reference, interleaved on the
# same machine with the same thread count, and prints one table: ms per training step each side,
# the speed-up, peak memory each side, and this project's bandwidth against the machine's triad.
#
# Usage (from the repository root):
#   bench/setup-pytorch.sh                                   # once: bench/.venv with torch
#   bench/compare.sh [THREADS] [ROUNDS] [WORKLOAD[:BATCH]...]
# Workloads: pattern pattern:16 images maze oja (the default: all five).
# Environment: PYTHON (default bench/.venv/bin/python), PLASTICITY (default: cargo build
# --release, then target/release/plasticity), DEVICE (cpu | wgpu; default cpu: wgpu needs a
# build with --features wgpu), TORCH_DEVICE (default: cpu for cpu, cuda for wgpu).
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(pattern pattern:16 images maze oja)
py=${PYTHON:-bench/.venv/bin/python}
device=${DEVICE:-cpu}
torch_device=${TORCH_DEVICE:-$([ "$device" = cpu ] && echo cpu || echo cuda)}
if [ -z "${PLASTICITY:-}" ]; then
  cargo build --release --quiet
  PLASTICITY=target/release/plasticity
fi
log=${LOG:-$(mktemp)}  # LOG=FILE keeps the raw JSON lines
for r in $(seq "$rounds"); do
  for spec in "${workloads[@]}"; do
    w=${spec%%:*}; b=""
    [ "$spec" != "$w" ] && b=${spec#*:}
    ours=("$PLASTICITY" bench "$w" --json --episodes 10 --threads "$threads" --device "$device")
    theirs=("$py" bench/pytorch_reference.py --workload "$w" --episodes 5 --threads "$threads" --device "$torch_device")
    [ -n "$b" ] && ours+=(--batch "$b") && theirs+=(--batch "$b")
    echo "{\"spec\": \"$spec\", \"ours\": $("${ours[@]}"), \"theirs\": $("${theirs[@]}" | tail -1)}" >> "$log"
    echo "round $r: $spec done" >&2
  done
done
python3 - "$log" "$rounds" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
specs = list(dict.fromkeys(r["spec"] for r in rows))
print("| workload | N | T | B | device | threads | plasticity ms/step | PyTorch ms/step | speed-up | plasticity peak MB | PyTorch peak MB | memory | plasticity GB/s | triad GB/s | of roofline |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for s in specs:
    rs = [r for r in rows if r["spec"] == s]
    o, t = rs[0]["ours"], rs[0]["theirs"]
    om = st.median(r["ours"]["ms_per_episode"] for r in rs)
    tm = st.median(r["theirs"]["ms_per_episode"] for r in rs)
    gpu = o["device"] != "cpu"
    key = "device_memory_mb" if gpu else "peak_rss_mb"
    omb = max(r["ours"][key] or 0 for r in rs)
    tmb = max(r["theirs"][key] or 0 for r in rs)
    gbs = st.median(r["ours"]["achieved_gbs"] for r in rs)
    triad = [r["ours"]["stream_gbs"] for r in rs if r["ours"]["stream_gbs"]]
    tr = st.median(triad) if triad else None
    frac = f"{100 * gbs / tr:.0f}%" if tr else "-"
    trs = f"{tr:.1f}" if tr else "-"
    print(f"| {s.split(':')[0]} | {o['neurons']} | {o['steps']} | {o['batch']} | {o['device']} | {o['threads']} | "
          f"{om:.1f} | {tm:.1f} | {tm / om:.1f}x | {omb:.0f} | {tmb:.0f} | 1/{tmb / max(omb, 1e-9):.0f} | {gbs:.1f} | {trs} | {frac} |")
mem = "GPU memory (allocator peak)" if rows[0]["ours"]["device"] != "cpu" else "peak RSS"
print(f"(medians over {len(rows) // len(specs)} interleaved rounds; plasticity: median of 10 steps, "
      f"PyTorch: median of 5, each after 2 warm-up steps; memory: {mem}; PyTorch {rows[0]['theirs']['torch']})")
PY
[ -z "${LOG:-}" ] && rm -f "$log"
true
