#!/usr/bin/env bash
# Redraws the learning-curve figures of docs/ (docs/<name>.svg) from their curves in
# docs/data/<name>.csv with `plasticity plot --table`.
#
# The CSVs were digitised once from the earlier figures (scripts/svg_curves.py OLD.svg OUT.csv;
# the runs that produced them are not kept); their `#` lines give the source, the old title
# and the precision of each axis. The curves are drawn as given: what was smoothed was
# smoothed by the original plot, and each note says over how many updates.
#
# Usage: scripts/redraw_docs_figures.sh [PLASTICITY_BINARY]   (default: target/release/plasticity)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/plasticity}
digitised="digitised from the earlier figure"

# draw NAME TITLE NOTE X_LABEL Y_LABEL [more plot options]
draw() {
    local name=$1 title=$2 note=$3 x=$4 y=$5
    shift 5
    "$bin" plot --table "docs/data/$name.csv" --out "docs/$name.svg" --title "$title" \
        --note "$note" --x-label "$x" --y-label "$y" "$@" >/dev/null
}

# The modulator figures: M(t) of three episodes and episode 1's rewards as dots (the steps
# without a reward, drawn at 0 by the old figure, are left out), divided by SCALE (the old
# figure's legend "reward / 1 (episode 1)" is "reward (episode 1)" in the CSV).
modulator() {
    local name=$1 title=$2 scale=$3 rewards="reward (episode 1)" per="" tmp
    if [ "$scale" != 1 ]; then
        rewards="reward / $scale (episode 1)" per=" / $scale"
    fi
    tmp=$(mktemp --suffix .csv)
    awk -F, -v r="$rewards" 'index($0, r) != 1 || $(NF-2) + 0 < -0.01 || $(NF-2) + 0 > 0.01' \
        "docs/data/$name.csv" >"$tmp"
    "$bin" plot --table "$tmp" --out "docs/$name.svg" --title "$title" \
        --note "each step, not smoothed; episode 1's rewards$per as dots; $digitised" \
        --x-label "step of the episode (from 0)" --y-label "M(t); reward$per" \
        --dots "$rewards" >/dev/null
    rm -f "$tmp"
}

draw maze_reward "maze: mean reward per episode during training" \
    "200-update moving average, median and IQR of 3 seeds; $digitised" update "reward per episode"
modulator maze_modul_modulator "maze, trained modul agent: modulator M(t) in three episodes" 10
modulator maze_modplast_modulator "maze, trained modplast agent: modulator M(t) in three episodes" 10

draw cue_reward_paper_reward "cue-reward at the paper's size: reward per episode during training" \
    "100-update moving average, median and IQR of 3 seeds; $digitised" update "reward per episode"
draw cue_reward_reward "cue-reward, reduced setting: reward per episode during training" \
    "300-update moving average, median and IQR of 3 seeds; $digitised" update "reward per episode"
modulator cue_reward_paper_modul_modulator \
    "cue-reward (paper's size), trained modul agent: M(t) in three episodes" 1
modulator cue_reward_paper_modplast_modulator \
    "cue-reward (paper's size), trained modplast agent: M(t) in three episodes" 1
modulator cue_reward_modul_modulator \
    "cue-reward (reduced), trained modul agent: M(t) in three episodes" 1
modulator cue_reward_modplast_modulator \
    "cue-reward (reduced), trained modplast agent: M(t) in three episodes" 1

draw pattern1000_vs_pytorch "pattern, 1000 bits: plasticity and the PyTorch reference" \
    "25-update moving average (one episode per update), 3 seeds each; $digitised" \
    "update (one episode each)" "error (fraction of bits wrong)" --log
draw comparison50_error "pattern, 50 bits: plastic network, RNN and LSTM (seed 1)" \
    "50-update moving average (one episode per update); $digitised" \
    "update (one episode each)" "error (fraction of bits wrong)"
draw comparison50_loss "pattern, 50 bits: training loss of the plastic network, RNN and LSTM" \
    "50-update moving average (one episode per update), seed 1; $digitised" \
    "update (one episode each)" "loss"

draw images_erased_loss "images: loss on the erased half during training" \
    "50-update moving average; $digitised" update "loss on the erased half"

draw lm_test_perplexity "lm: test perplexity at the end of each epoch" \
    "one point per epoch, median and IQR of 3 seeds; $digitised" update "test perplexity" --log

draw omniglot_accuracy "omniglot: training accuracy, step-decay and burn Conv2d runs" \
    "1,000-update moving average; $digitised" update "training accuracy"
draw omniglot_accuracy_2h "omniglot: training accuracy of the cosine runs against wall time" \
    "2,000-update moving average; $digitised" "wall time (seconds)" "training accuracy"
draw omniglot_paper_short_accuracy "omniglot, paper's split: training accuracy of short runs" \
    "100-update moving average; $digitised" update "training accuracy"
draw omniglot_queries "omniglot: 10 queries with normalised features against the paper's episode" \
    "2,000-update moving average; $digitised" "wall time (seconds)" "training accuracy"
draw omniglot_splits_2threads "omniglot: both splits with 2 threads, against wall time" \
    "2,000-update moving average; $digitised" "wall time (seconds)" "training accuracy"
draw omniglot_width "omniglot: 64- and 96-channel runs" \
    "2,000-update moving average, meta-batch 8; $digitised" update "training accuracy"
