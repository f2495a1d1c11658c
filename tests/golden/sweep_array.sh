#!/bin/sh
# A sweep's job array, written by `plasticity sweep --on slurm` and submitted with
# sbatch --array=POINTS%MAX: array task K runs point K of manifest.json (a new run, or the
# resumption of an interrupted one) through the same binary.
#SBATCH --job-name=sweep-golden
#SBATCH --output={DIR}/logs/slurm-%A_%a.out
#SBATCH --cpus-per-task=2
#SBATCH --time=00:10:00
#SBATCH --mem=1G
cd '{CWD}' || exit 1
exec '{BIN}' sweep run-point '{DIR}' "$SLURM_ARRAY_TASK_ID" --threads 2
