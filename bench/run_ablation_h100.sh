#!/usr/bin/env bash
# Issue 24's ablation on one H100, in one device call of at most 9 minutes once the data is staged
# (../shared/data/cifar10/README.md: two calls back to back, then this one):
#   DISTILL_COMMIT=<commit> PYTHONPATH=. bash bench/run_ablation_h100.sh DATA_DIR OUT_DIR
# The student on labels alone (kd.alpha=0: no teacher), 10 epochs, two seeds a row, each a bench.py step
# (bench/steps.sh) into OUT_DIR/<step>.json; accuracy at a fixed epoch count does not depend on the device, so
# the rows are the CPU table's. In order of importance:
#   lite           kd_fast94_lite: cifar_resnet_lite with its own optimiser (kd_fast94 before issue 24)
#   air            kd_fast94: cifar_resnet_air with airbench94's optimiser
#   lite_airmodel  the model alone changed (kd_fast94_lite with model.name=cifar_resnet_air)
#   lite_airopt    the optimiser alone changed (kd_fast94 with model.name=cifar_resnet_lite)
#   air_*          kd_fast94 with one choice undone: ReLU inside F, learned BatchNorm scales, Kaiming init
#                  instead of Dirac, average-pool head, BatchNorm defaults, no label smoothing, no lookahead,
#                  BatchNorm biases at 1 x LR; and air_b112, a second block in the last stage (3.21M)
#   lite_*         kd_fast94_lite with one of the model's choices added: GELU, frozen BatchNorm scales (with
#                  Kaiming init: a scale that starts at 0 cannot stay frozen), Dirac init, max-pool head with
#                  1/9 logits
# then bench/steps_table.py writes OUT_DIR/ablation.md.
#
# Rehearsal on a CPU (tiny models and data; every step and the table):
#   SMOKE=1 PYTHONPATH=. bash bench/run_ablation_h100.sh DATA_DIR /tmp/rehearsal
set -uo pipefail
D=${1:?data dir holding cifar-10-batches-py}; O=${2:-bench_out}; W=${W:-/tmp/ablation}
source "$(dirname "$0")/steps.sh"

L=(--student-set kd.alpha=0 --runs 2)
# row RECIPE NAME OVERRIDES...: each row's overrides, then STUDENT's (with SMOKE, the tiny net wins: the rehearsal
# checks that every step runs)
row() { local recipe=$1 name=$2; shift 2; local sets=(); for o in "$@"; do sets+=(--student-set "$o"); done
  step "$name" 30 --student-recipe "$recipe" "${L[@]}" --no-warmup "${sets[@]}" "${STUDENT[@]}"; }
air() { row kd_fast94 "$@"; }
lite() { row kd_fast94_lite "$@"; }
step lite 45 --student-recipe kd_fast94_lite "${L[@]}" "${STUDENT[@]}"  # with the warm-up run
air air
lite lite_airmodel model.name=cifar_resnet_air
air lite_airopt model.name=cifar_resnet_lite model.kwargs.whiten=true
air air_relu model.kwargs.act=relu
air air_bn_weight model.kwargs.norm_weight=true
air air_kaiming model.kwargs.init=kaiming
air air_avg_head model.kwargs.head=avg model.kwargs.logit_scale=1
air air_bn_default model.kwargs.bn_momentum=0.1 model.kwargs.bn_eps=1e-5
air air_no_smoothing train.label_smoothing=0
air air_no_lookahead train.lookahead=false
air air_bias_lr_1 train.norm_bias_lr_scale=1
air air_b112 "model.kwargs.blocks=[1,1,2]"
lite lite_gelu model.kwargs.act=gelu
lite lite_frozen_bn model.kwargs.norm_weight=false model.kwargs.init=kaiming
lite lite_dirac model.kwargs.init=dirac
lite lite_max_head model.kwargs.head=max model.kwargs.logit_scale=0.1111111
echo "== done at $(( $(date +%s) - START ))s"
python bench/steps_table.py "$O" ablation
