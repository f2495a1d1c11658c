#!/usr/bin/env bash
# Coverage-guided fuzzing of every reader (issue 26) with cargo-fuzz (libFuzzer), which needs a
# nightly toolchain (`rustup toolchain install nightly`, `cargo install cargo-fuzz`):
#
#   scripts/fuzz.sh [RUNS] [TARGET...]     (default: 1000000 runs of each target in fuzz/fuzz_targets)
#
# Each target starts from fuzz/seeds/<target> and keeps its growing corpus in
# fuzz/corpus/<target> (not committed). A crash stops the script with libFuzzer's report; copy
# the input it names (fuzz/artifacts/<target>/crash-...) into fuzz/regressions/<target>/, fix
# the reader, and tests/fuzz_regressions.rs keeps it fixed. Prints one summary line per target.
# FUZZ_SANITIZER (default none: panics and aborts are what the readers must not do; `address`
# for memory errors, slower) and FUZZ_RSS_MB (default 2048: an input that makes a reader hold
# more memory is a crash).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1000000}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(cifar omniglot_png omniglot_zip ptb config checkpoint)
fi
sanitizer=${FUZZ_SANITIZER:-none}
# The folder readers get their input written to a scratch folder: in memory where possible.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi
cargo +nightly fuzz build -O --sanitizer "$sanitizer"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log="fuzz/corpus/$t.log"
  start=$SECONDS
  cargo +nightly fuzz run -O --sanitizer "$sanitizer" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -runs="$runs" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -max_len=65536 -print_final_stats=1 \
    >"$log" 2>&1 || { tail -40 "$log"; echo "fuzz: $t crashed, see $log" >&2; exit 1; }
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(ls "fuzz/corpus/$t" | wc -l)
  echo "fuzz: $t: ${execs:-?} executions in $((SECONDS - start)) s, no crash; coverage ${cov:-?} edges, corpus $corpus inputs"
done
