#!/usr/bin/env bash
# What each of issue 3's tricks buys, measured on one GPU: the prepared script for a session with a device.
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_tricks_h100.sh PART DATA_DIR OUT_DIR
# Stage the data first (../shared/data/cifar10/README.md: two calls, back to back); then run PART 1 and
# PART 2 in two device calls (each under 600 s; PART 2 reuses PART 1's teacher in /tmp/t1, so the
# machine must still be warm). Every bench writes OUT_DIR/<name>.json; BENCHMARKS.md is written from those.
#
# PART 1 (~5 min): teacher_fast + cache + kd_fast94 (the baseline; every run also reports accuracy with
#   no TTA, flip TTA and flip + 1-pixel-shift TTA on the same weights), then kd_fast94 on the same teacher
#   with one trick at a time: alternating flips (the cache is rebuilt with them), the whitening stem,
#   Lookahead, label smoothing, progressive resizing, the max-pool student cifar_resnet_lite, torch.compile
#   (its compile time is in the warm-up, reported apart).
# PART 2 (~5 min): a teacher with the tricks (whitening, alternating flips, label smoothing, 40 epochs),
#   a second teacher_fast seed, and kd_fast96 distilled from the 2-teacher ensemble and from one teacher,
#   and with cifar_resnet_m's widths in the max-pool layout (4.9M, 0.39 GFLOP per image forward).
#
# A rehearsal on a CPU, before spending device time (smoke recipes, tiny data, no compile):
#   TEACHER=teacher_smoke S94=kd_smoke S96=kd_smoke W=/tmp/rehearsal NO_COMPILE=1 \
#   EXTRA="train.epochs=2 train.batch_size=50" PYTHONPATH=. bash bench/run_tricks_h100.sh 1 DATA OUT
set -uo pipefail
P=${1:?part 1 or 2}; D=${2:?data dir holding cifar-10-batches-py}; O=${3:-bench_out}; mkdir -p "$O"
TEACHER=${TEACHER:-teacher_fast}; S94=${S94:-kd_fast94}; S96=${S96:-kd_fast96}; W=${W:-/tmp}
read -r -a EXTRA <<< "${EXTRA:-}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$O/gpu.txt"
echo "${DISTILL_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" | tee "$O/commit.txt"
quiet() { grep -v -E '^epoch [0-9]+/' ; }
bench() { local name=$1 limit=$2; shift 2
  timeout "$limit" python bench/bench.py --data-dir "$D" --json "$O/$name.json" "$@" data.download=false \
    "${EXTRA[@]}" 2>&1 | quiet; }

if [[ "$P" == 1 ]]; then
  bench base94 150 --teacher-recipe "$TEACHER" --student-recipe "$S94" --runs 2 --work-dir "$W/t1"
  T=(--teacher-run "$W/t1/teacher" --student-recipe "$S94" --runs 2)
  bench altflip94 40 "${T[@]}" --work-dir "$W/s1" augment.alternate_flip=true
  bench whiten94 40 "${T[@]}" --work-dir "$W/s2" model.kwargs.whiten=true
  bench lookahead94 40 "${T[@]}" --work-dir "$W/s3" train.lookahead=true
  bench smooth94 40 "${T[@]}" --work-dir "$W/s4" train.label_smoothing=0.1
  bench progressive94 40 "${T[@]}" --work-dir "$W/s9" train.progressive_min_size=20
  bench lite94 40 "${T[@]}" --work-dir "$W/s10" model.name=cifar_resnet_lite
  [[ -n "${NO_COMPILE:-}" ]] || bench compile94 90 "${T[@]}" --work-dir "$W/s5" train.compile=true
else
  teacher() { local out=$1 limit=$2; shift 2
    timeout "$limit" python distill/train_teacher.py --recipe "$TEACHER" --output-dir "$out" --data-dir "$D" \
      data.download=false "${EXTRA[@]}" "$@" 2>&1 | quiet; cp "$out/summary.json" "$O/$(basename "$out")_summary.json"; }
  teacher "$W/t2" 120 model.kwargs.whiten=true augment.alternate_flip=true train.label_smoothing=0.1 \
    "${TEACHER_EPOCHS:-train.epochs=40}"
  bench tricks_teacher94 60 --teacher-run "$W/t2" --student-recipe "$S94" --runs 1 --work-dir "$W/s8"
  teacher "$W/t3" 90 seed=1
  bench ensemble96 90 --teacher-run "$W/t1/teacher" --teacher-run "$W/t3" --student-recipe "$S96" --runs 2 \
    --work-dir "$W/s6"
  bench single96 60 --teacher-run "$W/t1/teacher" --student-recipe "$S96" --runs 2 --work-dir "$W/s7"
  bench pool96 60 --teacher-run "$W/t1/teacher" --student-recipe "$S96" --runs 2 --work-dir "$W/s11" \
    model.name=cifar_resnet_m model.kwargs.downsample=pool model.kwargs.stem_pool=true
fi
