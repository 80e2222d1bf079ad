"""The one Accelerator a run uses: CPU or GPU, one process or many, with the recipe's precision.

Entry points build it (:func:`make_accelerator`) and hand it down; nothing below them creates one.
Its precision is ``train.mixed_precision`` as :class:`~distill.compute.Compute` resolves it for every stage:
``auto`` (the default) is bf16 autocast on a GPU and on a CPU that computes bf16 natively, float32 on
other CPUs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs

from distill.compute import Compute
from distill.recipe import Recipe


def make_accelerator(recipe: Recipe) -> Accelerator:
    # Without a GPU, say cpu=True: only then does Accelerate set up gloo when launched as several processes.
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=use_cpu)
    if state.num_processes == 1 and state.is_main_process:
        _warn_if_processes_were_dropped()
    compute = Compute.resolve(recipe.train.mixed_precision, state.device)
    # a whitening bias held after train.whiten_bias_epochs leaves DDP a parameter without a gradient, so DDP must
    # look for unused parameters each step (else its reduction waits for that gradient and fails)
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if recipe.train.whiten_bias_epochs else []
    try:
        return Accelerator(mixed_precision=compute.mode, cpu=use_cpu, kwargs_handlers=handlers)
    except ValueError:
        # Accelerate keeps one precision per process: a second Accelerator (a cache built within bench.py or a test)
        # that asks for another one is refused, so it takes the first one's, and the run's header says so
        # (distill.trainer).
        return Accelerator(cpu=use_cpu, kwargs_handlers=handlers)


def _requested_processes(launcher_argv: list[str]) -> int:
    """``--num_processes N`` (or ``=N``) in an ``accelerate launch`` command line; 1 if absent."""
    for i, arg in enumerate(launcher_argv):
        value = arg.partition("=")[2] if arg.startswith("--num_processes=") else None
        if arg == "--num_processes" and i + 1 < len(launcher_argv):
            value = launcher_argv[i + 1]
        if value is not None and value.isdigit():
            return int(value)
    return 1


def _warn_if_processes_were_dropped() -> None:
    """`accelerate launch --cpu --num_processes N` starts one process (without --mpirun_hostfile): say so.

    Best effort: reads the launcher's command line from /proc; elsewhere it stays silent.
    """
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() != "true":
        return
    try:
        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return
    wanted = _requested_processes(parent) if "launch" in " ".join(parent) else 1
    if wanted > 1:
        print(
            f"warning: accelerate launch --cpu --num_processes {wanted} started 1 process (Accelerate needs "
            f"--mpirun_hostfile for several CPU processes); for {wanted} CPU processes over gloo use "
            f"accelerate launch --multi_gpu --num_processes {wanted}",
            file=sys.stderr,
            flush=True,
        )
