#!/usr/bin/env bash
# What each of issue 3's tricks buys, measured on one GPU: the prepared script for a session with a device.
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_tricks_h100.sh PART DATA_DIR OUT_DIR
# Stage the data first (../shared/data/cifar10/README.md: two calls, back to back); then run PART 1 and
# PART 2 in two device calls (each about 6-7 min at most; PART 2 reuses PART 1's teacher in $W/t1, so the
# machine must still be warm). Every bench writes OUT_DIR/<name>.json; BENCHMARKS.md is written from those.
#
# PART 1: teacher_fast + cache + kd_fast94 (the baseline; every run also reports accuracy with no TTA,
#   flip TTA and flip + 1-pixel-shift TTA on the same weights), then kd_fast94 on the same teacher with
#   one of its tricks taken out at a time (stride downsampling instead of max-pools, no whitening stem,
#   random instead of alternating flips, 4-pixel translations), and with torch.compile (its compile time
#   is in the warm-up, reported apart).
# PART 2: a second, stronger teacher candidate (cifar_resnet_t_wide in the max-pool layout, whitening
#   stem, alternating flips, 40 epochs); kd_fast96 from teacher_fast alone, from the 2-teacher ensemble,
#   with kd_fast94's tricks, and with cifar_resnet_m's widths in the max-pool layout; kd_fast94 from
#   the ensemble.
#
# A rehearsal on a CPU, before spending device time (smoke recipes, tiny data, no compile):
#   TEACHER=teacher_smoke S94=kd_smoke S96=kd_smoke W=/tmp/rehearsal NO_COMPILE=1 SLOW=5 TEACHER_EPOCHS=train.epochs=2 \
#   EXTRA="train.epochs=2 train.batch_size=50 cache.views=2 data.train_limit=400 data.test_limit=200" \
#   PYTHONPATH=. bash bench/run_tricks_h100.sh 1 DATA OUT     # then the same with 2
set -uo pipefail
P=${1:?part 1 or 2}; D=${2:?data dir holding cifar-10-batches-py}; O=${3:-bench_out}; mkdir -p "$O"
TEACHER=${TEACHER:-teacher_fast}; S94=${S94:-kd_fast94}; S96=${S96:-kd_fast96}; W=${W:-/tmp}
read -r -a EXTRA <<< "${EXTRA:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$O/gpu.txt"
echo "${DISTILL_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" | tee "$O/commit.txt"
quiet() { grep -v -E '^epoch [0-9]+/' ; }
# every step has a time limit (times SLOW, e.g. 5 for a CPU rehearsal); a step that fails says so and the rest go on
step() { local name=$1 limit=$2; shift 2
  timeout "$((limit * ${SLOW:-1}))" "$@" 2>&1 | quiet
  local rc=${PIPESTATUS[0]}; [[ $rc == 0 ]] || echo "STEP $name FAILED: exit $rc (124: over its limit)" | tee -a "$O/failed.txt"; }
bench() { local name=$1 limit=$2; shift 2
  step "$name" "$limit" python bench/bench.py --data-dir "$D" --json "$O/$name.json" "$@" data.download=false "${EXTRA[@]}"; }
# kd_fast94's tricks, for another recipe
TRICKS=(model.kwargs.whiten=true augment.translate=2 augment.alternate_flip=true train.tta_translate=1)

if [[ "$P" == 1 ]]; then
  bench base94 160 --teacher-recipe "$TEACHER" --student-recipe "$S94" --runs 3 --work-dir "$W/t1"
  T=(--teacher-run "$W/t1/teacher" --student-recipe "$S94" --runs 2)
  bench stride94 40 "${T[@]}" --work-dir "$W/s1" model.name=cifar_resnet_fast
  bench no_whiten94 40 "${T[@]}" --work-dir "$W/s2" model.kwargs.whiten=false
  bench random_flip94 45 "${T[@]}" --work-dir "$W/s3" augment.alternate_flip=false
  bench translate4_94 45 "${T[@]}" --work-dir "$W/s4" augment.translate=4
  [[ -n "${NO_COMPILE:-}" ]] || bench compile94 90 "${T[@]}" --work-dir "$W/s5" train.compile=true
else
  step teacher2 130 python distill/train_teacher.py --recipe "$TEACHER" --output-dir "$W/t2" --data-dir "$D" \
    data.download=false "${EXTRA[@]}" model.name=cifar_resnet_t_wide model.kwargs.downsample=pool \
    model.kwargs.stem_pool=true model.kwargs.whiten=true augment.alternate_flip=true \
    "${TEACHER_EPOCHS:-train.epochs=40}"
  cp "$W/t2/summary.json" "$O/t2_summary.json"
  PAIR=(--teacher-run "$W/t1/teacher" --teacher-run "$W/t2")
  bench single96 60 --teacher-run "$W/t1/teacher" --student-recipe "$S96" --runs 2 --work-dir "$W/s6"
  bench ensemble96 70 "${PAIR[@]}" --student-recipe "$S96" --runs 2 --work-dir "$W/s7"
  bench tricks96 70 "${PAIR[@]}" --student-recipe "$S96" --runs 2 --work-dir "$W/s8" "${TRICKS[@]}"
  bench pool96 60 "${PAIR[@]}" --student-recipe "$S96" --runs 2 --work-dir "$W/s9" \
    model.name=cifar_resnet_m model.kwargs.downsample=pool model.kwargs.stem_pool=true
  bench ensemble94 45 "${PAIR[@]}" --student-recipe "$S94" --runs 2 --work-dir "$W/s10"
fi
