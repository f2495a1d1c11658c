#!/usr/bin/env bash
# Soak test (issue 26): trains long runs and samples their resident memory, to catch leaks
# (an autodiff graph kept alive across updates grows memory with every update).
#
#   scripts/soak.sh [PATTERN_EPISODES] [MAZE_UPDATES] [OUT_DIR]     (defaults: 10000 2000 soak; 0 skips)
#
# For each run it writes OUT_DIR/<name>-rss.csv (seconds,updates_done,rss_mb, one sample every
# SOAK_SAMPLE_SECONDS, default 5) and prints the resident memory after warm-up (the first 10% of
# the updates): the median of the first and of the last third of the samples, the growth between
# them, and the range. Growth over 5% fails (exit 1).
# Needs a release build (cargo build --release); runs on the CPU with SOAK_THREADS threads
# (default 1, so that it can run beside other work).
set -euo pipefail
pattern_episodes=${1:-10000}
maze_updates=${2:-2000}
out=${3:-soak}
sample=${SOAK_SAMPLE_SECONDS:-5}
threads=${SOAK_THREADS:-1}
bin=${PLASTICITY:-target/release/plasticity}
[ -x "$bin" ] || { echo "soak: $bin not found: run cargo build --release first" >&2; exit 2; }
mkdir -p "$out"
status=0

soak() { # name total command...
  local name=$1 total=$2
  shift 2
  local run="$out/$name" csv="$out/$name-rss.csv"
  rm -rf "$run"
  "$bin" "$@" --out "$run" --threads "$threads" --progress-every 600 2>"$out/$name.log" &
  local pid=$! start=$SECONDS
  echo "seconds,updates_done,rss_mb" >"$csv"
  while kill -0 "$pid" 2>/dev/null; do
    local rss done
    rss=$(awk '/^VmRSS:/ {print $2 / 1024}' "/proc/$pid/status" 2>/dev/null || true)
    done=0
    [ -f "$run/metrics.csv" ] && done=$(($(wc -l <"$run/metrics.csv") - 1))
    [ -n "$rss" ] && echo "$((SECONDS - start)),$done,$rss" >>"$csv"
    sleep "$sample"
  done
  wait "$pid" || { echo "soak: $name failed, see $out/$name.log" >&2; status=1; return; }
  # Resident memory after warm-up (the first 10% of the updates); a leak shows as growth from
  # the first third of these samples to the last third (medians, so that one transient sample
  # does not decide), against the 5% limit. Min and max are reported too.
  local rss_after n
  rss_after=$(awk -F, -v total="$total" 'NR > 1 && $2 >= total / 10 {print $3}' "$csv")
  n=$(printf '%s\n' "$rss_after" | grep -c . || true)
  if [ "$n" -lt 3 ]; then
    echo "$name: too few samples after warm-up ($n)"
    status=1
    return
  fi
  median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
  local first last lo hi
  first=$(printf '%s\n' "$rss_after" | head -n $((n / 3)) | median)
  last=$(printf '%s\n' "$rss_after" | tail -n $((n / 3)) | median)
  lo=$(printf '%s\n' "$rss_after" | sort -n | head -1)
  hi=$(printf '%s\n' "$rss_after" | sort -n | tail -1)
  awk -v name="$name" -v total="$total" -v n="$n" -v first="$first" -v last="$last" \
      -v lo="$lo" -v hi="$hi" 'BEGIN {
    growth = 100 * (last - first) / first
    printf "%s: %d updates, %d samples after warm-up: resident memory %.1f MB (median, first third) -> %.1f MB (last third), growth %+.2f%% (limit 5%%); range %.1f-%.1f MB %s\n",
           name, total, n, first, last, growth, lo, hi, (growth <= 5 ? "ok" : "FAILED")
    exit (growth <= 5 ? 0 : 1)
  }' || status=1
}

# A count of 0 skips that run.
[ "$pattern_episodes" -gt 0 ] && soak pattern "$pattern_episodes" pattern --episodes "$pattern_episodes"
[ "$maze_updates" -gt 0 ] && soak maze "$maze_updates" maze --episodes "$maze_updates"
exit $status
