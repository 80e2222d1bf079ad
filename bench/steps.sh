# What the prepared device scripts share (bench/run_frontier_h100.sh, bench/run_losses_h100.sh); each sources
# this after setting D (the data dir), O (the output dir) and W (the work dir). It sets START, BUDGET (default
# 500 s), SLOW, EXTRA (overrides for every recipe) and STUDENT (bench.py flags for the student), writes O/gpu.txt
# and O/commit.txt, and defines
#   step NAME LIMIT_SECONDS bench.py-args...
# one bench.py run into O/NAME.json and W/NAME/; a step whose limit would end past BUDGET is skipped and named in
# O/skipped.txt, one that fails or runs over its limit is named in O/failed.txt, and the script goes on.
# With SMOKE=1 every recipe runs as it is on tiny nets and data (a CPU rehearsal), with no budget.
mkdir -p "$O"; rm -rf "$W"; mkdir -p "$W"
START=$(date +%s); BUDGET=${BUDGET:-500}; SLOW=1
EXTRA=(); STUDENT=()
if [[ -n "${SMOKE:-}" ]]; then
  SLOW=10; BUDGET=100000
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
