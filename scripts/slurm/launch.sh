#!/usr/bin/env bash
# Runs once per node (directly from one_node.sbatch, through srun from multi_node.sbatch): builds the
# `accelerate launch` line from SLURM's variables and runs it.
#
#   bash scripts/slurm/launch.sh distill/train_teacher.py --recipe teacher --output-dir runs/teacher ...
#
# Machines: SLURM_JOB_NUM_NODES; this node's rank: SLURM_NODEID; GPUs per node: SLURM_GPUS_ON_NODE
# (else nvidia-smi); rendezvous: MASTER_ADDR / MASTER_PORT, exported by the sbatch script.
# A training stage whose --output-dir already holds a checkpoint gets --resume, so a requeued
# (pre-empted) job continues where it stopped. DISTILL_DRY_RUN=1 prints the line instead of running it.
set -euo pipefail

script="$1"
shift

nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
node_rank="${SLURM_NODEID:-0}"
gpus="${SLURM_GPUS_ON_NODE:-}"
if [[ -z "$gpus" ]]; then
    gpus=$( (nvidia-smi -L 2>/dev/null || true) | wc -l)
fi
if [[ "$gpus" -lt 1 ]]; then
    echo "error: no GPU on $(hostname); ask for GPUs with --gpus-per-node=N" >&2
    exit 2
fi
processes=$((nodes * gpus))
threads=$(( ${SLURM_CPUS_PER_TASK:-$gpus} / gpus ))
threads=$(( threads > 0 ? threads : 1 ))

out=""
prev=""
for arg in "$@"; do
    [[ "$prev" == "--output-dir" ]] && out="$arg"
    [[ "$arg" == --output-dir=* ]] && out="${arg#--output-dir=}"
    prev="$arg"
done
resume=()
if [[ "$script" == *train_* && -n "$out" && -d "$out/state" ]]; then
    resume=(--resume)
fi

mode=(--num_processes "$processes" --num_machines "$nodes" --num_cpu_threads_per_process "$threads")
if [[ "$processes" -gt 1 ]]; then
    mode=(--multi_gpu "${mode[@]}")
fi
if [[ "$nodes" -gt 1 ]]; then
    mode+=(--machine_rank "$node_rank" --main_process_ip "${MASTER_ADDR:?set by the sbatch script}"
           --main_process_port "${MASTER_PORT:?set by the sbatch script}" --rdzv_backend static)
fi

# The recipe's train.mixed_precision decides the precision; these two only spare the launcher's warning.
cmd=(accelerate launch -q "${mode[@]}" --mixed_precision bf16 --dynamo_backend no "$script" "$@" "${resume[@]}")
if [[ "${DISTILL_DRY_RUN:-0}" == 1 ]]; then
    echo "${cmd[*]}"
    exit 0
fi
exec "${cmd[@]}"
