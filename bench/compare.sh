#!/usr/bin/env bash
# Runs the benchmark workloads in this project and in the PyTorch reference, interleaved on the
# same machine with the same thread count, and prints one table: ms per training step (or per
# agent update) each side, the speed-up, peak memory each side, and this project's bandwidth
# against the machine's triad.
#
# Usage (from the repository root):
#   bench/setup-pytorch.sh                                   # once: bench/.venv with torch
#   bench/compare.sh [THREADS] [ROUNDS] [WORKLOAD[/MODEL][:BATCH]...]
# Workloads: pattern pattern:16 images maze oja (the plastic network's training step), and
# maze-agent cue-reward (a whole actor-critic update: rollout, A2C loss, backward, Adam), with
# MODEL rnn | plastic | modplast | modul (default modul), e.g. maze-agent/plastic cue-reward/rnn.
# Default: pattern pattern:16 images maze oja maze-agent cue-reward.
# Environment: PYTHON (default bench/.venv/bin/python), PLASTICITY (default: cargo build
# --release, then target/release/plasticity), DEVICE (cpu | wgpu; default cpu: wgpu needs a
# build with --features wgpu; the agents run on the CPU only), TORCH_DEVICE (default: cpu for
# cpu, cuda for wgpu), LOG=FILE keeps the raw JSON lines, EPISODES_OURS / EPISODES_THEIRS: timed
# steps per run (default 10 / 5; fewer for a quick trial), TORCH_ARGS: extra options of
# bench/pytorch_reference.py for the plastic-network workloads (e.g. --per-episode or --chunk 16
# for pattern:16; by default it runs as many of the batch's episodes together as fit in memory).
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
workloads=("$@")
[ ${#workloads[@]} -eq 0 ] && workloads=(pattern pattern:16 images maze oja maze-agent cue-reward)
py=${PYTHON:-bench/.venv/bin/python}
k_ours=${EPISODES_OURS:-10}
k_theirs=${EPISODES_THEIRS:-5}
device=${DEVICE:-cpu}
torch_device=${TORCH_DEVICE:-$([ "$device" = cpu ] && echo cpu || echo cuda)}
for spec in "${workloads[@]}"; do
  w=${spec%%:*}; w=${w%%/*}
  case "$w" in
    pattern|images|maze|oja) [[ "$spec" == */* ]] && { echo "compare.sh: $spec: a model is for maze-agent and cue-reward only" >&2; exit 2; } ;;
    maze-agent|cue-reward) ;;
    *) echo "compare.sh: unknown workload '$spec'" >&2; exit 2 ;;
  esac
done
if [ -z "${PLASTICITY:-}" ]; then
  cargo build --release --quiet
  PLASTICITY=target/release/plasticity
fi
log=${LOG:-$(mktemp)}
for r in $(seq "$rounds"); do
  for spec in "${workloads[@]}"; do
    head=${spec%%:*}; b=""
    [ "$spec" != "$head" ] && b=${spec#*:}
    w=${head%%/*}; m=""
    [ "$head" != "$w" ] && m=${head#*/}
    dev=$device; tdev=$torch_device
    case "$w" in maze-agent|cue-reward) dev=cpu; tdev=cpu; m=${m:-modul} ;; esac
    ours=("$PLASTICITY" bench "$w" --json --updates "$k_ours" --threads "$threads" --device "$dev")
    theirs=("$py" bench/pytorch_reference.py --workload "$w" --episodes "$k_theirs" --threads "$threads" --device "$tdev")
    [ -n "$b" ] && ours+=(--batch "$b") && theirs+=(--batch "$b")
    [ -n "$m" ] && ours+=(--model "$m") && theirs+=(--model "$m")
    [ -z "$m" ] && [ -n "${TORCH_ARGS:-}" ] && theirs+=(${TORCH_ARGS})
    echo "{\"spec\": \"$spec\", \"ours\": $("${ours[@]}"), \"theirs\": $("${theirs[@]}" | tail -1)}" >> "$log"
    echo "round $r: $spec done" >&2
  done
done
python3 - "$log" "$k_ours" "$k_theirs" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
specs = list(dict.fromkeys(r["spec"] for r in rows))
def med(v):
    v = [x for x in v if x is not None]
    return st.median(v) if v else None
def fmt(v, f="{:.1f}"):
    return f.format(v) if v is not None else "-"
print("| workload | N | T | B | device | threads | plasticity ms/step | PyTorch ms/step | speed-up | plasticity peak MB | PyTorch peak MB | memory | plasticity GB/s | triad GB/s | of roofline |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
notes = []
for s in specs:
    rs = [r for r in rows if r["spec"] == s]
    o, t = rs[0]["ours"], rs[0]["theirs"]
    om = st.median(r["ours"]["ms_per_update"] for r in rs)
    tm = st.median(r["theirs"]["ms_per_update"] for r in rs)
    gpu = o["device"] != "cpu"
    key = "device_memory_mb" if gpu else "peak_rss_mb"
    omb = max(r["ours"].get(key) or 0 for r in rs)
    tmb = max(r["theirs"].get(key) or 0 for r in rs)
    gbs = med(r["ours"].get("achieved_gbs") for r in rs)
    tr = med(r["ours"].get("stream_gbs") for r in rs)
    frac = f"{100 * gbs / tr:.0f}%" if tr and gbs else "-"
    name = s.split(':')[0]
    print(f"| {name} | {o['neurons']} | {o['steps']} | {o['batch']} | {o['device']} | {o['threads']} | "
          f"{om:.1f} | {tm:.1f} | {tm / om:.1f}x | {omb:.0f} | {tmb:.0f} | 1/{tmb / max(omb, 1e-9):.0f} | {fmt(gbs)} | {fmt(tr)} | {frac} |")
    if "chunk" in t and t["chunk"] != t["batch"]:
        notes.append(f"{s}: PyTorch ran its batch of {t['batch']} in chunks of {t['chunk']} episodes")
    if o["neurons"] != t["neurons"] or o["steps"] != t["steps"] or o["batch"] != t["batch"]:
        notes.append(f"{s}: shapes differ: PyTorch N={t['neurons']} T={t['steps']} B={t['batch']}")
mem = "GPU memory (allocator peak)" if rows[0]["ours"]["device"] != "cpu" else "peak RSS"
print(f"(medians over {len(rows) // len(specs)} interleaved rounds; plasticity: median of {sys.argv[2]} steps, "
      f"PyTorch: median of {sys.argv[3]}, each after 2 warm-up steps; memory: {mem}; PyTorch {rows[0]['theirs']['torch']})")
for n in notes:
    print(n)
PY
[ -z "${LOG:-}" ] && rm -f "$log"
true
