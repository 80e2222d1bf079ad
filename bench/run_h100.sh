#!/usr/bin/env bash
# The GPU measurements behind BENCHMARKS.md, as run on the device machine from the repo root:
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_h100.sh DATA_DIR OUT_DIR  (the tree there has no .git)
# Issue 3's fast recipes first, then the default teacher -> kd_t4 / ce runs for README's results.
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; mkdir -p "$O"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$O/gpu.txt"
echo "${DISTILL_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" | tee "$O/commit.txt"
quiet() { grep -v -E '^epoch [0-9]+/' ; }
timeout 240 python bench/bench.py --teacher-recipe teacher_fast --student-recipe kd_fast94 --runs 3 \
  --data-dir "$D" --work-dir /tmp/b1 --json "$O/fast94.json" data.download=false 2>&1 | quiet
timeout 100 python bench/bench.py --teacher-run /tmp/b1/teacher --student-recipe kd_fast96 --runs 2 \
  --data-dir "$D" --work-dir /tmp/b2 --json "$O/fast96.json" data.download=false 2>&1 | quiet
timeout 40 python bench/bench.py --teacher-run /tmp/b1/teacher --student-recipe kd_fast94 --runs 1 \
  --data-dir "$D" --work-dir /tmp/b3 --json "$O/fast94_ce.json" data.download=false kd.alpha=0 2>&1 | quiet
