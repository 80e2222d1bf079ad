#!/usr/bin/env bash
# Issue 10 on one H100, in one device call of at most 9 minutes once the data is staged
# (../shared/data/cifar10/README.md: two calls back to back, then this one):
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_frontier_h100.sh DATA_DIR OUT_DIR
# Each step is a bench.py run that writes OUT_DIR/<step>.json; at the end bench/summarize.py prints the
# table of targets met or missed (OUT_DIR/summary.md) and plots accuracy against GPU seconds with the
# airbench anchors (OUT_DIR/frontier.png). In order of importance:
#   fast94  teacher_96 (1 seed) -> its logits on kd_fast94's views -> kd_fast94 x 3 seeds
#   max     teacher_97 x 3 seeds (ensemble) -> 64 view sets of strong views -> kd_max (everything timed)
#   fast96  kd_fast96 from the max step's teachers and cache, as it is
#   ce96    kd_fast96's twin on labels alone (kd.alpha=0: no teacher), what KD buys on the same schedule
#   half    kd_max at half its epochs from the same cache: what the longer schedule buys
#   fast94c kd_fast94 x 3 again from the fast94 step's teacher and cache, with train.compile=true: what
#           torch.compile buys (its compile seconds, the warm-up's first step, reported apart)
#   fast94lite kd_fast94_lite x 3 (kd_fast94 before issue 24: cifar_resnet_lite and its own optimiser) from the
#           same teacher: what the new student buys on a GPU, in accuracy and seconds
# A step whose time limit would end past BUDGET seconds (default 500) is skipped and named in
# OUT_DIR/skipped.txt; a step that fails or runs over its limit is named in OUT_DIR/failed.txt, and the
# rest still run (bench/steps.sh).
#
# Rehearsal on a CPU (tiny models and data; every step and the summary run, in a few minutes):
#   SMOKE=1 PYTHONPATH=. bash bench/run_frontier_h100.sh DATA_DIR /tmp/rehearsal
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; W=${W:-/tmp/frontier}
source "$(dirname "$0")/steps.sh"
T97_SEEDS=3; [[ -n "${SMOKE:-}" ]] && T97_SEEDS=2

T97=(--teacher-run "$W/max/teacher/seed0" --teacher-run "$W/max/teacher/seed1")
(( T97_SEEDS > 2 )) && T97+=(--teacher-run "$W/max/teacher/seed2")
step fast94 150 --teacher-recipe teacher_96 --student-recipe kd_fast94 --runs 3 "${STUDENT[@]}"
step max 360 --teacher-recipe teacher_97 --teacher-seeds "$T97_SEEDS" --student-recipe kd_max --runs 1 "${STUDENT[@]}"
step fast96 60 "${T97[@]}" --teacher-cache "$W/max/teacher/cache" --student-recipe kd_fast96 --runs 1 "${STUDENT[@]}"
step ce96 45 --student-recipe kd_fast96 --student-set kd.alpha=0 --runs 1 "${STUDENT[@]}"
step half 75 "${T97[@]}" --teacher-cache "$W/max/teacher/cache" --student-recipe kd_max --runs 1 --no-warmup \
  --student-set train.epochs=80 "${STUDENT[@]}"
step fast94c 120 --teacher-run "$W/fast94/teacher" --student-recipe kd_fast94 --runs 3 --student-set train.compile=true \
  "${STUDENT[@]}"
step fast94lite 120 --teacher-run "$W/fast94/teacher" --student-recipe kd_fast94_lite --runs 3 "${STUDENT[@]}"
echo "== done at $(( $(date +%s) - START ))s"
python bench/summarize.py "$O"
