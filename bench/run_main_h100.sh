#!/usr/bin/env bash
# The default recipes end to end on one GPU, for README's Results, as run on the device machine:
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_main_h100.sh DATA_DIR OUT_DIR
# EXTRA="key=value ..." appends overrides to every run (e.g. to rehearse it on a CPU with tiny settings).
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-main_out}; R=${RUNS_DIR:-/tmp/main}; mkdir -p "$O"
X=(data.download=false train.checkpoint_every=20 train.eval_every=5 ${EXTRA:-})
quiet() { grep -v -E '^epoch [0-9]+/' ; }
accelerate launch -q distill/train_teacher.py --recipe teacher --data-dir "$D" --output-dir "$R/teacher" "${X[@]}" 2>&1 | quiet
accelerate launch -q distill/train_student.py --recipe kd_t4 --teacher-cache "$R/teacher/cache" --data-dir "$D" \
  --output-dir "$R/kd_t4" "${X[@]}" 2>&1 | quiet
accelerate launch -q distill/train_student.py --recipe ce --data-dir "$D" --output-dir "$R/ce" "${X[@]}" 2>&1 | quiet
python distill/report.py "$R/teacher" "$R/ce" "$R/kd_t4" --data-dir "$D" --out "$R/report"
tar -czf "$O/main_runs.tgz" -C "$R" report teacher/summary.json teacher/metrics.jsonl teacher/run.json \
  kd_t4/summary.json kd_t4/metrics.jsonl kd_t4/run.json ce/summary.json ce/metrics.jsonl ce/run.json
