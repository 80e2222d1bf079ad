#!/usr/bin/env bash
# Issue 31 on one H100, in one device call of at most 9 minutes once the data is staged
# (../shared/data/cifar10/README.md: two calls back to back, then this one):
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_speed_h100.sh DATA_DIR OUT_DIR
# Today's optimiser (airbench94's SGD, 10 epochs) against airbench94_muon's (Muon on the filters, 8 epochs), each a
# bench.py step (bench/steps.sh) into OUT_DIR/<step>.json, two student seeds a step; then bench/steps_table.py
# writes OUT_DIR/speed.md. Accuracy at a fixed epoch count does not depend on the device: these rows give the GPU
# seconds of the CPU table in BENCHMARKS.md ("Half the CPU time"). In order of importance:
#   sgd        teacher_94 train.label_smoothing=0 -> its cache -> kd_fast94 (KD at T = 1)
#   muon       teacher_94_muon (label smoothing 0, as the sgd row) -> its cache -> kd_fast94_muon
#   sgd_ce     kd_fast94 on labels alone (kd.alpha=0)
#   muon_ce    kd_fast94_muon on labels alone
#   muon_prog  kd_fast94_muon on labels alone with progressive resizing from 24 pixels (train.progressive_min_size)
#
# Rehearsal on a CPU (tiny models and data; every step and the table):
#   SMOKE=1 PYTHONPATH=. bash bench/run_speed_h100.sh DATA_DIR /tmp/rehearsal
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; W=${W:-/tmp/speed}
source "$(dirname "$0")/steps.sh"

CE=(--student-set kd.alpha=0 --runs 2 --no-warmup)
step sgd 150 --teacher-recipe teacher_94 --teacher-set train.label_smoothing=0 --student-recipe kd_fast94 --runs 2 \
  "${STUDENT[@]}"
step muon 150 --teacher-recipe teacher_94_muon --student-recipe kd_fast94_muon \
  --runs 2 "${STUDENT[@]}"
step sgd_ce 45 --student-recipe kd_fast94 "${CE[@]}" "${STUDENT[@]}"
step muon_ce 45 --student-recipe kd_fast94_muon "${CE[@]}" "${STUDENT[@]}"
step muon_prog 45 --student-recipe kd_fast94_muon "${CE[@]}" --student-set train.progressive_min_size=24 "${STUDENT[@]}"
echo "== done at $(( $(date +%s) - START ))s"
python bench/steps_table.py "$O" speed
