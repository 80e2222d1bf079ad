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
# A step whose time limit would end past BUDGET seconds (default 500) is skipped and named in
# OUT_DIR/skipped.txt; a step that fails or runs over its limit is named in OUT_DIR/failed.txt, and the
# rest still run.
#
# Rehearsal on a CPU (tiny models and data; every step and the summary run, in a few minutes):
#   SMOKE=1 PYTHONPATH=. bash bench/run_frontier_h100.sh DATA_DIR /tmp/rehearsal
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; W=${W:-/tmp/frontier}
mkdir -p "$O"; rm -rf "$W"; mkdir -p "$W"
START=$(date +%s); BUDGET=${BUDGET:-500}; SLOW=1
EXTRA=(); STUDENT=(); T97_SEEDS=3
if [[ -n "${SMOKE:-}" ]]; then  # every recipe as it is, on tiny nets and data
  SLOW=10; BUDGET=100000; T97_SEEDS=2
  EXTRA=(data.train_limit=300 data.test_limit=200 train.epochs=2 train.batch_size=50 train.eval_batch_size=100
         cache.views=2 cache.batch_size=100 model.name=cifar_air_tiny)
  STUDENT=(--student-set model.name=cifar_resnet_tiny)
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$O/gpu.txt"
echo "${DISTILL_COMMIT:-$(git rev-parse HEAD 2>/dev/null)}" | tee "$O/commit.txt"

step() {  # step NAME LIMIT_SECONDS bench.py-args...
  local name=$1 limit=$(( $2 * SLOW )); shift 2
  local used=$(( $(date +%s) - START ))
  if (( used + limit > BUDGET )); then echo "$name (at ${used}s, limit ${limit}s)" | tee -a "$O/skipped.txt"; return; fi
  echo "== $name: bench.py $* (at ${used}s)"
  timeout "$limit" python bench/bench.py --data-dir "$D" --json "$O/$name.json" --work-dir "$W/$name" "$@" \
    data.download=false "${EXTRA[@]}" 2>&1 | grep -v -E '^epoch [0-9]+/'
  local rc=${PIPESTATUS[0]}
  [[ $rc == 0 ]] || echo "$name: exit $rc (124: over its ${limit}s limit)" | tee -a "$O/failed.txt"
}

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
echo "== done at $(( $(date +%s) - START ))s"
python bench/summarize.py "$O"
