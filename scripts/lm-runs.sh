#!/bin/sh
# Trains the language models of the PTB comparison with several seeds, PARALLEL runs at a time
# (one thread each), all for the same number of epochs; then prints the validation and test
# perplexities of the last epoch per model (median and inter-quartile range over the seeds) and
# draws them.
#
# usage: scripts/lm-runs.sh EPOCHS "MODELS" "SEEDS" [PARALLEL] [-- extra options]
#   MODELS: lstm plastic modplast modul
#   example: scripts/lm-runs.sh 6 "lstm plastic modplast" "0 1 2" 2 -- --data-dir DATA/ptb
#
# Runs go to runs/lm-MODEL-seedS; a run with a checkpoint is resumed. The plots are
# runs/lm-valid.svg and runs/lm-test.svg. Set PLASTICITY to the binary (default:
# target/release/plasticity).
set -eu
epochs=$1; models=$2; seeds=$3; parallel=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
extra="$*"
bin=${PLASTICITY:-target/release/plasticity}
[ -x "$bin" ] || { echo "build first: cargo build --release (or set PLASTICITY)" >&2; exit 2; }
jobs=$(mktemp)
for m in $models; do
  flags="--model $m"
  for s in $seeds; do
    out=runs/lm-$m-seed$s
    if [ -f "$out/checkpoint.bin" ]; then
      echo "$bin lm --resume $out --epochs $epochs --threads 1"
    else
      echo "$bin lm $flags --seed $s --epochs $epochs --threads 1 --out $out $extra"
    fi
  done
done > "$jobs"
echo "$(wc -l < "$jobs") runs of $epochs epochs, $parallel at a time" >&2
xargs -P "$parallel" -I{} sh -c '{} > /dev/null 2>&1 || echo "failed: {}" >&2' < "$jobs"
rm -f "$jobs"
"$bin" plot runs/lm-*-seed* --metric valid_perplexity --seeds --smooth 1 --log --out runs/lm-valid.svg
"$bin" plot runs/lm-*-seed* --metric perplexity --seeds --smooth 1 --log --out runs/lm-test.svg
