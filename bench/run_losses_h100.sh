#!/usr/bin/env bash
# Issue 25 on one H100 with issue 24's student, in one device call of at most 9 minutes once the data is staged
# (../shared/data/cifar10/README.md: two calls back to back, then this one):
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_losses_h100.sh DATA_DIR OUT_DIR
# kd_fast94's student, 10 epochs, two seeds a row, from teacher_94 train.label_smoothing=0; each step a bench.py
# run (bench/steps.sh) into OUT_DIR/<step>.json, in order of importance:
#   ens3          three such teachers (seeds 0-2), their mean logits on kd_fast94's views, kd_fast94 as it is
#   kl            seed 0's teacher alone (its cache is built here and reused below), kd_fast94 as it is
#   kl_std dkd dkd_std dist    the same with each kd.loss at its paper's values (docs/recipes.md, "Losses")
#   ens2          teachers 0 and 1
#   t_kl ... t_dist, t_ens3    with the CIFAR-10 test images as transfer set (kd.unlabeled)
#   kl_T4 kl_std_w1            Hinton's T = 4 with the loss x 1/4 (a CE-sized gradient: on a CPU, +1.55 on (b) over
#                 T = 1 in two seeds), and kl_std at weight 1, which diverged on a CPU under the student's airbench
#                 optimiser (BENCHMARKS.md, issue 24)
# Then every student is scored on (a) the CIFAR-10 test set and (b) its seeded corrupted copy
# (bench/transfer_table.py; OUT_DIR/scores.json) and bench/steps_table.py writes OUT_DIR/losses.md.
#
# Rehearsal on a CPU (tiny models and data; every step and the table):
#   SMOKE=1 PYTHONPATH=. bash bench/run_losses_h100.sh DATA_DIR /tmp/rehearsal
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; W=${W:-/tmp/losses}
BUDGET=${BUDGET:-420}  # the students' share of the call; scoring and the table take the rest
source "$(dirname "$0")/steps.sh"
python bench/transfer_table.py sets --data-dir "$D" --out "$W/sets" || echo "sets: failed" | tee -a "$O/failed.txt"

T=(--teacher-set train.label_smoothing=0)
ONE=(--teacher-run "$W/ens3/teacher/seed0"); TWO=("${ONE[@]}" --teacher-run "$W/ens3/teacher/seed1")
THREE=("${TWO[@]}" --teacher-run "$W/ens3/teacher/seed2")
S=(--student-recipe kd_fast94 --runs 2 "${STUDENT[@]}")
TS=(--student-set "kd.unlabeled=[$W/sets/cifar10_test.npy]")
step ens3 150 --teacher-recipe teacher_94 "${T[@]}" --teacher-seeds 3 "${S[@]}"
step kl 40 "${ONE[@]}" "${S[@]}"
for loss in kl_std dkd dkd_std dist; do
  step "$loss" 30 "${ONE[@]}" --teacher-cache "$W/kl/cache" "${S[@]}" --student-set kd.loss=$loss
done
step ens2 40 "${TWO[@]}" "${S[@]}"
step t_kl 40 "${ONE[@]}" "${S[@]}" "${TS[@]}"
for loss in kl_std dkd dkd_std dist; do
  step "t_$loss" 30 "${ONE[@]}" --teacher-cache "$W/t_kl/cache" "${S[@]}" "${TS[@]}" --student-set kd.loss=$loss
done
step t_ens3 40 "${THREE[@]}" "${S[@]}" "${TS[@]}"
step kl_T4 30 "${ONE[@]}" --teacher-cache "$W/kl/cache" "${S[@]}" --student-set kd.temperature=4 \
  --student-set kd.loss_scale=0.25
step kl_std_w1 30 "${ONE[@]}" --teacher-cache "$W/kl/cache" "${S[@]}" --student-set kd.loss=kl_std \
  --student-set kd.std_weight=1
echo "== students trained at $(( $(date +%s) - START ))s; scoring"
runs=(); for j in "$O"/*.json; do
  name=$(basename "$j" .json)
  for r in "$W/$name"/student_[0-9]*; do [[ -f $r/run.json ]] && runs+=("$name/$(basename "$r")=$r"); done
done
timeout $(( 60 * SLOW )) python bench/transfer_table.py score --bn-stats train --sets "$W/sets" --json "$O/scores.json" "${runs[@]}" \
  > "$O/scores.txt" 2>&1 || echo "scores: failed" | tee -a "$O/failed.txt"
echo "== done at $(( $(date +%s) - START ))s"
python bench/steps_table.py "$O" losses
