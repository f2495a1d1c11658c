#!/usr/bin/env bash
# Times full training episodes of the pattern task (N = 1001, T = 106, B = 1) in this project
# and in the PyTorch reference, interleaved on the same machine with the same thread count,
# and prints a table with the ratios. Usage (from the repository root):
#   bench/setup-pytorch.sh            # once
#   bench/compare-pattern.sh [THREADS] [ROUNDS]
set -euo pipefail
threads=${1:-2}
rounds=${2:-3}
py=${PYTHON:-bench/.venv/bin/python}
cargo build --release --quiet
ours=(); theirs=(); ours_mb=(); theirs_mb=()
for r in $(seq "$rounds"); do
  o=$(./target/release/plasticity bench pattern --json --episodes 20 --threads "$threads")
  t=$("$py" bench/pytorch_pattern.py --episodes 12 --threads "$threads" | tail -1)
  ours+=("$(echo "$o" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ms_per_episode"])')")
  ours_mb+=("$(echo "$o" | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mb"])')")
  theirs+=("$(echo "$t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ms_per_episode"])')")
  theirs_mb+=("$(echo "$t" | python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_mb"])')")
done
python3 - "$threads" "${ours[*]}" "${theirs[*]}" "${ours_mb[*]}" "${theirs_mb[*]}" <<'PY'
import statistics as st, sys
threads = sys.argv[1]
o, t, om, tm = ([float(x) for x in a.split()] for a in sys.argv[2:6])
print(f"| workload | threads | plasticity ms/episode | PyTorch ms/episode | speed-up | plasticity peak MB | PyTorch peak MB | memory ratio |")
print(f"|---|---|---|---|---|---|---|---|")
print(f"| pattern N=1001 T=106 B=1 | {threads} | {st.median(o):.0f} | {st.median(t):.0f} | {st.median(t)/st.median(o):.1f}x | {max(om):.0f} | {max(tm):.0f} | 1/{max(tm)/max(om):.0f} |")
print(f"(medians over {len(o)} interleaved rounds; each round: median of 20 timed episodes for plasticity, 10 for PyTorch)")
PY
