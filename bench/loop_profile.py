"""Where an epoch's time goes: the training loop against a bare step of the same model and batch.

    python bench/loop_profile.py --recipe kd_fast94 --teacher-cache runs/teacher_94/cache --data-dir DIR
    python bench/loop_profile.py --recipe teacher_94 --data-dir DIR data.train_limit=10000 --json out.json

A *bare step* is forward, cross-entropy, backward and a plain SGD step on one fixed batch (the recipe's
model, batch size, memory format and precision): the most a loop of that model can do. The *loop* is
:func:`distill.engine.train_one_epoch` on one epoch of the recipe's views, as training runs it. The
breakdown times each thing the loop adds, on its own and on the same batches: making the batches (view
replay, policy, normalisation: :func:`~distill.engine.epoch_batches`), the KD loss over cross-entropy,
the recipe's optimiser (Lookahead, parameter groups) over plain SGD, the LR schedule, EMA and the
per-step bookkeeping and syncs (what is left), then the evaluation passes an epoch may run. Every figure
is wall-clock seconds per epoch on this device (CPU timings are synchronous; on a GPU each timer
synchronises first). ``bench.py`` reports the bare step beside each run's loop img/s (:func:`bare_step`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from distill import engine, trainer
from distill.cli import with_data_dir
from distill.devices import make_accelerator
from distill.engine import bare_step
from distill.errors import cli_main
from distill.files import write_json
from distill.recipe import load_recipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device, repeat: int = 1) -> float:
    """Seconds per call of ``fn`` (after one untimed call that warms it up)."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeat


def profile(recipe_name: str, overrides: list[str], teacher_cache: str | None, steps: int = 8) -> dict:
    """Time one epoch of the recipe's loop and each part of it; see the module docstring."""
    recipe = load_recipe(recipe_name, overrides)
    accelerator = make_accelerator(recipe)
    role = "student" if recipe.kd.teacher else "teacher"  # a student recipe names its teacher
    with tempfile.TemporaryDirectory() as tmp:
        run = trainer._setup(recipe, role, Path(tmp) / "run", accelerator, False, teacher_cache)
        try:
            return _profile(run, steps)
        finally:
            run.lock.release()


def _profile(run: trainer.Run, steps: int) -> dict:
    recipe, accelerator, cfg = run.recipe, run.accelerator, run.recipe.train
    device = accelerator.device

    def batches():
        data = trainer._epoch_data(run, 0)
        return engine.epoch_batches(
            data, recipe.augment, cfg.batch_size, recipe.seed, 0, accelerator, cfg.channels_last
        )

    n_steps = run.steps_per_epoch
    progress = engine.make_progress(accelerator)
    with progress:  # the loop first: the parts below step the optimiser on stale gradients
        start = time.perf_counter()
        stats = engine.train_one_epoch(
            run.forward, batches(), n_steps, run.criterion, run.optimizer, run.schedule, accelerator, run.ema,
            epoch=0, step=0, progress=progress,
        )  # fmt: skip
        loop_seconds = time.perf_counter() - start
    batch_seconds = _timed(lambda: [None for _ in batches()], device)
    first = next(iter(batches()))
    per_image = 1 / bare_step(recipe, run.model, first.x, accelerator, steps)  # a full batch's, per image
    images = stats["img_per_s"] * stats["seconds"]  # a ragged last batch makes this less than steps x batch
    x, y, t = first.x, first.y, first.teacher_logits
    with accelerator.autocast():
        logits = run.model(x).detach()
    ce_seconds = _timed(lambda: F.cross_entropy(logits.float(), y), device, 20)
    loss_seconds = _timed(lambda: run.criterion(logits, y, t, first.y_partner, first.lam), device, 20)

    # the recipe's optimiser against plain SGD, on the same gradients
    with accelerator.autocast():
        out = run.model(x)
    accelerator.backward(F.cross_entropy(out.float(), y))
    params = [p for p in run.model.parameters() if p.requires_grad]
    plain = torch.optim.SGD(params, lr=1e-9, momentum=0.9, nesterov=True)
    optimizer_seconds = _timed(run.optimizer.step, device, steps) - _timed(plain.step, device, steps)
    schedule_seconds = _timed(lambda: run.schedule.step_update(num_updates=1), device, 50)
    ema_seconds = _timed(lambda: run.ema.update(run.model, step=1), device, steps) if run.ema is not None else 0.0

    eval_seconds = _timed(lambda: trainer._evaluate(run, run.eval_set, tta=None), device)
    final_seconds = _timed(lambda: trainer._evaluate(run, run.test_set, recipe.tta), device)

    parts = {
        "batches (view replay, policy, normalisation)": batch_seconds,
        "bare steps (forward, CE, backward, SGD)": per_image * images,
        "KD loss over CE": max(loss_seconds - ce_seconds, 0.0) * n_steps,
        "optimiser over plain SGD (groups, lookahead)": max(optimizer_seconds, 0.0) * n_steps,
        "LR schedule": schedule_seconds * n_steps,
        "EMA": ema_seconds * n_steps,
    }
    parts["the rest (bookkeeping, syncs, progress)"] = max(loop_seconds - sum(parts.values()), 0.0)
    return {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "device": str(device),
        "precision": accelerator.mixed_precision,
        "threads": torch.get_num_threads(),
        "batch_size": cfg.batch_size,
        "train_images": len(run.train),
        "steps_per_epoch": n_steps,
        "policy": recipe.augment.policy,
        "loop_seconds": loop_seconds,
        "loop_img_per_s": images / loop_seconds,
        "bare_step_img_per_s": 1 / per_image,
        "loop_share_of_step": per_image * images / loop_seconds,
        "parts_seconds": parts,
        "eval_seconds": {
            f"per-epoch evaluation ({len(run.eval_set[1]):,} images, no TTA)": eval_seconds,
            f"final test evaluation ({len(run.test_set[1]):,} images, TTA {recipe.tta.label})": final_seconds,
        },
    }


def print_profile(result: dict) -> None:
    table = Table(
        title=f"{result['recipe']} ({result['model']}), {result['train_images']:,} images, batch "
        f"{result['batch_size']}, {result['device']} x{result['threads']} threads, {result['precision']}"
    )
    table.add_column("part of one epoch")
    table.add_column("seconds", justify="right")
    table.add_column("share of the loop", justify="right")
    for name, seconds in result["parts_seconds"].items():
        table.add_row(name, f"{seconds:.2f}", f"{seconds / result['loop_seconds']:.1%}")
    table.add_row("[bold]the loop (train_one_epoch)", f"{result['loop_seconds']:.2f}", "100%")
    for name, seconds in result["eval_seconds"].items():
        table.add_row(name, f"{seconds:.2f}", "")
    Console().print(table)
    print(
        f"loop {result['loop_img_per_s']:,.0f} img/s, bare step {result['bare_step_img_per_s']:,.0f} img/s: "
        f"the loop runs at {result['loop_share_of_step']:.1%} of its step",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Time a training loop against a bare step of its model.")
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--teacher-cache", help="a student recipe's cache (its views and logits)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/")
    parser.add_argument("--steps", type=int, default=8, help="timed repetitions of each step-sized part")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    result = profile(args.recipe, with_data_dir(args.overrides, args.data_dir), args.teacher_cache, args.steps)
    print_profile(result)
    if args.json:
        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    cli_main(main)
