"""The training run shared by teacher and student: data -> model -> epochs -> weights and summary.

A teacher trains with cross-entropy on fresh augmentations. A student trains with :class:`KDLoss`
on the views replayed from a logit cache (never a teacher forward pass), or with plain
cross-entropy when ``kd.alpha = 0`` (the ``ce`` baseline).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from rich.console import Console
from rich.table import Table
from timm.utils import ModelEmaV3

from distill import engine
from distill.augment import normalize
from distill.data import Split, load_cifar10
from distill.errors import Stopped, UserError
from distill.failpoints import failpoint
from distill.logit_cache import LogitCache
from distill.losses import KDLoss
from distill.optim import StepSchedule, make_optimizer
from distill.recipe import Recipe
from distill.runs import (
    WEIGHTS,
    begin_run,
    check_run_dir,
    create_model,
    load_checkpoint,
    recover_state,
    run_info,
    save_checkpoint,
    save_weights,
    write_atomic,
    write_json,
)
from students import PARAM_CAP, check_param_cap, count_trainable


@dataclass
class Result:
    run_dir: Path
    test_accuracy: float
    trainable_params: int
    summary: dict = field(default_factory=dict)
    model: torch.nn.Module | None = None  # the evaluated (EMA, if used) model, unwrapped
    accelerator: Accelerator | None = None


def make_accelerator(recipe: Recipe) -> Accelerator:
    # Without a GPU, say cpu=True: only then does Accelerate set up gloo when launched as several processes.
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    state = PartialState(cpu=use_cpu)
    if state.num_processes == 1 and state.is_main_process:
        _warn_if_processes_were_dropped()
    precision = recipe.train.mixed_precision if state.device.type == "cuda" else "no"
    if state.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    return Accelerator(mixed_precision=precision, cpu=use_cpu)


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


def load_data(recipe: Recipe) -> tuple[Split, Split]:
    train, test = load_cifar10(recipe.data.dir, recipe.data.download)
    return train.head(recipe.data.train_limit), test.head(recipe.data.test_limit)


def _rewrite_metrics(run_dir: Path, upto_epoch: int) -> None:
    """On resume, keep metrics.jsonl lines of checkpointed epochs only, so each epoch appears once."""
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        kept = []
        for ln in path.read_text().splitlines():
            try:
                if json.loads(ln)["epoch"] <= upto_epoch:
                    kept.append(ln)
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line cut short by a kill
        write_atomic(path, "".join(ln + "\n" for ln in kept))


class StopRequest:
    """Catch SIGTERM / SIGUSR1 (a pre-emption, a scheduler's time-limit warning) during training.

    The run then finishes its epoch, checkpoints and stops with :class:`~distill.errors.Stopped`
    (exit code 128 + signal), instead of dying mid-epoch and losing the work since the last
    checkpoint. Each process may receive the signal; :meth:`agreed` makes every process decide alike.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum = 0
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live on the main thread
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def agreed(self, accelerator: Accelerator) -> int:
        """The signal any process received (0 if none): the same answer on every process."""
        if accelerator.num_processes == 1:
            return self.signum
        flags = accelerator.gather(torch.tensor([self.signum], device=accelerator.device))
        return int(flags.max().item())


def _all_finite(model: torch.nn.Module) -> bool:
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())


def train(
    recipe: Recipe, role: str, run_dir: str | Path, resume: bool = False, teacher_cache: str | Path | None = None
) -> Result:
    """Train a teacher (``role="teacher"``) or a student (``role="student"``) and write its run dir.

    Returns the final (TTA if ``train.tta``) test accuracy and trainable parameter count, and prints both.
    """
    run_dir = Path(run_dir)
    t = recipe.train
    accelerator = make_accelerator(recipe)
    set_seed(recipe.seed)  # before model init and any random draw
    console = Console()
    say = console.print if accelerator.is_main_process else (lambda *a, **k: None)

    model = create_model(recipe)
    params = count_trainable(model)
    if role == "student":
        check_param_cap(model, recipe.model.name, PARAM_CAP)  # a hard rule, whatever the builder did
    kd = role == "student" and recipe.kd.alpha > 0
    if kd and teacher_cache is None:
        raise UserError(
            f"recipe '{recipe.name}' distils (kd.alpha={recipe.kd.alpha}) and needs --teacher-cache DIR; "
            f"build one with distill/train_teacher.py, or use recipe 'ce'"
        )
    if resume and accelerator.is_main_process:
        recover_state(run_dir)  # a kill during a checkpoint swap leaves state.tmp / state.old
    accelerator.wait_for_everyone()
    check_run_dir(run_dir, recipe, resume)
    train_split, test_split = load_data(recipe)
    spec = recipe.augment
    cache = None
    if kd:
        cache = LogitCache.load(teacher_cache)
        cache.check_matches(train_split, spec, recipe.cache.views)
    begin_run(run_dir, recipe, resume, accelerator.is_main_process)  # the first write, once the inputs are checked
    say(
        f"[bold]{role} {recipe.model.name}[/]: Trainable parameters: {params:,} | {len(train_split):,} train / "
        f"{len(test_split):,} test images | device {accelerator.device} x{accelerator.num_processes} "
        f"| precision {accelerator.mixed_precision}"
    )

    if not resume and hasattr(model, "init_from_data"):  # e.g. a whitening layer, set from training images
        model.init_from_data(normalize(torch.from_numpy(train_split.images[:5000]), channels_last=False))
    device = accelerator.device
    images, labels = engine.to_device_data(train_split.images, train_split.labels, device)
    test_images, test_labels = engine.to_device_data(test_split.images, test_split.labels, device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    optimizer = make_optimizer(model, t)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = None
    if t.ema_decay > 0:  # checkpointed by save_checkpoint as safetensors, not as an Accelerate custom pickle
        ema = ModelEmaV3(accelerator.unwrap_model(model), decay=t.ema_decay, device=device)
    forward_model = torch.compile(model) if t.compile else model
    steps = engine.steps_per_epoch(len(train_split), t.batch_size, accelerator.num_processes)
    scheduler = StepSchedule(t, optimizer, steps * t.epochs, steps)
    criterion = KDLoss(
        alpha=recipe.kd.alpha if kd else 0.0, temperature=recipe.kd.temperature, label_smoothing=t.label_smoothing
    )

    first_epoch, step, elapsed, test_acc = 0, 0, 0.0, None
    if resume:
        done = load_checkpoint(accelerator, run_dir, ema)
        first_epoch, step, elapsed, test_acc = done["epoch"], done["step"], done["wall_seconds"], done.get("test_acc")
        if accelerator.is_main_process:
            _rewrite_metrics(run_dir, first_epoch)
        say(f"resuming {run_dir} after epoch {first_epoch}")
    if accelerator.is_main_process and not resume:
        write_json(run_dir / "run.json", run_info(recipe, str(device), role, teacher_cache if kd else None))
    scheduler.step_update(num_updates=step)

    eval_model = (lambda: ema.module) if ema is not None else (lambda: forward_model)
    progress = engine.make_progress(accelerator)
    with progress, StopRequest() as stop:
        for epoch in range(first_epoch, t.epochs):
            if cache is not None:
                logits, views = cache.epoch_arrays(epoch)
                teacher_logits = torch.from_numpy(logits).to(device)
                views = {k: torch.from_numpy(v).to(device) for k, v in views.items()} if views else None
            else:
                teacher_logits, views = None, None
            if views is None:
                views = engine.fresh_views(len(train_split), spec, recipe.seed, epoch, device)
            data = engine.EpochData(images, labels, views, teacher_logits)
            size = engine.epoch_resolution(epoch, t.epochs, t.progressive_min_size, t.progressive_until)
            batches = engine.epoch_batches(
                data, spec, t.batch_size, recipe.seed, epoch, accelerator, t.channels_last, size
            )
            stats = engine.train_one_epoch(
                forward_model,
                batches,
                steps,
                criterion,
                optimizer,
                scheduler,
                accelerator,
                ema,
                epoch=epoch,
                step=step,
                progress=progress,
            )
            step = stats.pop("step")
            elapsed += stats["seconds"]
            last = epoch + 1 == t.epochs
            evaluated = (epoch + 1) % t.eval_every == 0 or last
            if evaluated:
                test_acc = engine.evaluate(
                    eval_model(),
                    test_images,
                    test_labels,
                    accelerator,
                    t.eval_batch_size,
                    tta=None,
                    channels_last=t.channels_last,
                )
            line = {
                "epoch": epoch + 1,
                "resolution": size,
                **{k: round(v, 6) for k, v in stats.items()},
                "test_acc": round(test_acc, 6) if evaluated else None,
            }  # null: not evaluated this epoch
            if accelerator.is_main_process:
                _append_metrics(run_dir, line)
                progress.console.print(
                    f"epoch {epoch + 1}/{t.epochs}  loss {stats['train_loss']:.4f}  train {stats['train_acc']:.2%}  "
                    f"test {f'{test_acc:.2%}' if evaluated else '-'}  {stats['img_per_s']:,.0f} img/s  "
                    f"{stats['seconds']:.1f}s"
                )
            failpoint("epoch.logged")
            signum = stop.agreed(accelerator)
            if (epoch + 1) % t.checkpoint_every == 0 or last or signum:
                if not _all_finite(model):
                    raise UserError(
                        f"weights became NaN or inf in epoch {epoch + 1}; lower train.lr (the last good checkpoint "
                        f"is kept in {run_dir / 'state'})"
                    )
                record = {"epoch": epoch + 1, "step": step, "wall_seconds": elapsed, "test_acc": test_acc}
                save_checkpoint(accelerator, run_dir, record, ema)
            if signum and not last:
                raise Stopped(
                    f"{signal.Signals(signum).name} received; checkpoint saved after epoch {epoch + 1} of {t.epochs} "
                    f"in {run_dir / 'state'}; rerun with --resume to continue",
                    signum,
                )

    final_model = ema.module if ema is not None else accelerator.unwrap_model(model)
    final_acc = engine.evaluate(
        final_model,
        test_images,
        test_labels,
        accelerator,
        t.eval_batch_size,
        tta=t.tta_spec(),
        channels_last=t.channels_last,
    )
    summary = {
        "role": role,
        "test_accuracy": final_acc,
        "test_accuracy_no_tta": test_acc,
        "tta": t.tta,
        "tta_translate": t.tta_translate,
        "trainable_params": params,
        "model": recipe.model.name,
        "epochs": t.epochs,
        "wall_seconds": round(elapsed, 3),
        "train_images": len(train_split),
        "test_images": len(test_split),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else str(device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "teacher_cache": str(teacher_cache) if kd else None,
        "recipe": recipe.to_dict(),
    }
    if accelerator.is_main_process:
        save_weights(final_model, run_dir / WEIGHTS)
        failpoint("run.weights")
        write_json(run_dir / "summary.json", summary)
        _print_summary(console, summary, run_dir)
    accelerator.wait_for_everyone()
    return Result(run_dir, final_acc, params, summary, final_model, accelerator)


def _append_metrics(run_dir: Path, line: dict) -> None:
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
    except OSError as err:
        raise UserError(
            f"cannot write {path} ({err.strerror or err}); free disk space, then --resume continues from the last "
            f"checkpoint"
        ) from None


def _tta_note(summary: dict) -> str:
    views = (["flip"] if summary["tta"] else []) + (
        [f"+-{summary['tta_translate']}px"] if summary["tta_translate"] else []
    )
    return f" (TTA: {', '.join(views)})" if views else ""


def _print_summary(console: Console, summary: dict, run_dir: Path) -> None:
    table = Table(title=f"{summary['role']} run: {run_dir}")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("model", summary["model"]),
        ("trainable parameters", f"{summary['trainable_params']:,}"),
        ("epochs", str(summary["epochs"])),
        ("train seconds", f"{summary['wall_seconds']:.1f}"),
        ("device", f"{summary['device']} x{summary['num_processes']}"),
        ("test accuracy" + _tta_note(summary), f"{summary['test_accuracy']:.2%}"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    print(f"Final test accuracy: {100 * summary['test_accuracy']:.2f}%")
    print(f"Trainable parameters: {summary['trainable_params']}", flush=True)
