#!/bin/sh
# Trains the variants of a reinforcement-learning task (maze or cue-reward) with several seeds,
# PARALLEL runs at a time (one thread each), each with a wall-clock budget; then draws the
# median reward curve with its inter-quartile band per variant and prints the final rewards.
#
# usage: scripts/rl-runs.sh TASK MINUTES "VARIANTS" "SEEDS" [PARALLEL] [-- extra options]
#   VARIANTS: models, optionally with a neuron count: "modul modplast plastic rnn rnn:139"
#   example:  scripts/rl-runs.sh maze 60 "modul modplast plastic rnn rnn:139" "0 1 2" 2
#
# Runs are started seed by seed (all variants of seed 0 first), so that an interrupted grid
# still compares every variant. Runs go to runs/TASK-VARIANT-seedS (VARIANT with the neuron
# count, e.g. rnn139); a run that already has a checkpoint is resumed (its budget counts the
# time it already had). The plot is runs/TASK-reward.svg. Set PLASTICITY to the binary
# (default: target/release/plasticity), and UPDATES to stop every run after that many updates
# as well (equal episodes, as the papers' curves compare; default: the time budget alone).
set -eu
task=$1; minutes=$2; variants=$3; seeds=$4; parallel=${5:-2}
shift $(( $# < 5 ? $# : 5 ))
[ "${1:-}" = "--" ] && shift
extra="$*"
bin=${PLASTICITY:-target/release/plasticity}
updates=${UPDATES:-10000000}
[ -x "$bin" ] || { echo "build first: cargo build --release (or set PLASTICITY)" >&2; exit 2; }
jobs=$(mktemp)
for s in $seeds; do
  for v in $variants; do
    model=${v%%:*}
    neurons=""
    name=$model
    case $v in *:*) neurons=${v#*:}; name=$model$neurons ;; esac
    out=runs/$task-$name-seed$s
    if [ -f "$out/checkpoint.bin" ]; then
      echo "$bin $task --resume $out --episodes $updates --time-limit $minutes --threads 1"
    else
      echo "$bin $task --model $model ${neurons:+--neurons $neurons} --seed $s --episodes $updates --time-limit $minutes --threads 1 --checkpoint-every 200 --out $out $extra"
    fi
  done
done > "$jobs"
echo "$(wc -l < "$jobs") runs of $minutes min, $parallel at a time" >&2
xargs -P "$parallel" -I{} sh -c '{} > /dev/null 2>&1 || echo "failed: {}" >&2' < "$jobs"
rm -f "$jobs"
"$bin" plot runs/"$task"-*-seed* --metric reward --seeds --smooth 200 --out runs/"$task"-reward.svg
