"""The training run shared by teacher and student: data -> model -> epochs -> weights and summary.

A teacher trains with cross-entropy on fresh augmentations. A student trains with :class:`KDLoss`
on the views replayed from a logit cache (never a teacher forward pass), or with plain
cross-entropy when ``kd.alpha = 0`` (the ``ce`` baseline). :func:`train` reads top to bottom:
:func:`_setup` checks every input and builds the run, the loop trains, evaluates, logs and
checkpoints each epoch, and :func:`_finish` scores the test set once and writes the results.
"""

from __future__ import annotations

import importlib.util
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from rich.console import Console
from rich.table import Table
from timm.utils import ModelEmaV3

from distill import engine, health
from distill.augment import TTASpec, normalize
from distill.compute import Compute
from distill.data import Split, load_data, load_transfer_set
from distill.errors import Stopped, UserError, warn, words
from distill.failpoints import failpoint
from distill.files import RunLock, check_distinct, write_json
from distill.logit_cache import LogitCache
from distill.losses import KDLoss
from distill.models import count_trainable, create_model, train_whitening_bias
from distill.optim import StepSchedule, make_optimizer
from distill.precision import resolve_ns_precision
from distill.recipe import Recipe
from distill.runs import (
    PROGRESS,
    STATE,
    WEIGHTS,
    append_metrics,
    begin_run,
    check_run_dir,
    check_same_data,
    load_checkpoint,
    recover_state,
    rewrite_metrics,
    run_info,
    save_checkpoint,
    save_test_predictions,
    save_weights,
)


@dataclass
class Result:
    run_dir: Path
    test_accuracy: float | None  # None when the run trained on the test split (data.train_on_test)
    trainable_params: int
    summary: dict = field(default_factory=dict)
    model: torch.nn.Module | None = None  # the evaluated (EMA, if used) model, unwrapped
    accelerator: Accelerator | None = None


@dataclass
class Run:
    """Everything the epoch loop needs, built by :func:`_setup`."""

    recipe: Recipe
    role: str
    run_dir: Path
    accelerator: Accelerator
    lock: RunLock
    model: torch.nn.Module  # prepared by Accelerate (wrapped in DDP with several processes)
    forward: torch.nn.Module  # what the loop calls: the model, or its torch.compile'd version
    params: int
    optimizer: torch.optim.Optimizer
    schedule: StepSchedule
    ema: ModelEmaV3 | None
    criterion: KDLoss
    cache: LogitCache | None
    train: Split
    images: torch.Tensor  # (N, 32, 32, 3) uint8 on the device
    labels: torch.Tensor
    eval_set: tuple[torch.Tensor, torch.Tensor]  # per-epoch evaluation: the held-out split, else the test set
    test_set: tuple[torch.Tensor, torch.Tensor]
    test_fingerprint: str  # the test images' and labels' sha256 (Split.fingerprint): what the final predictions are of
    steps_per_epoch: int
    teacher_cache: str | Path | None
    unlabeled: Split | None = None  # the transfer set: images[len(train):], label -1
    hardness: engine.Hardness | None = None  # each image's recorded loss, when train.select_fraction < 1
    tracker: object | None = None  # Accelerate's TensorBoardTracker (train.log_with), on the main process
    first_epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    eval_acc: float | None = None
    last_epoch: dict | None = None  # the last trained epoch's statistics (train_ce, train_acc, ...)
    health: str | None = None  # what health.verdict said, if anything (None: the run looks like learning)

    @property
    def eval_key(self) -> str:
        return "val_acc" if self.recipe.data.val_size else "test_acc"

    def say(self, *args, **kwargs) -> None:
        if self.accelerator.is_main_process:
            Console().print(*args, **kwargs)

    def evaluated_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.forward


def train(
    recipe: Recipe,
    role: str,
    run_dir: str | Path,
    accelerator: Accelerator,
    resume: bool = False,
    teacher_cache: str | Path | None = None,
    again: str = "rerun with --resume",
) -> Result:
    """Train a teacher (``role="teacher"``) or a student (``role="student"``) and write its run dir.

    Returns the final test accuracy (with the recipe's TTA) and trainable parameter count, and prints both.
    ``again`` is what a stopped run's message tells the user to do to continue (the command's own words).
    """
    run = _setup(recipe, role, Path(run_dir), accelerator, resume, teacher_cache)
    cfg = recipe.train
    progress = engine.make_progress(accelerator)
    try:
        with progress, engine.StopRequest() as stop:
            for epoch in range(run.first_epoch, cfg.epochs):
                size, stats = train_epoch(run, epoch, progress)
                run.seconds += stats["seconds"]
                run.last_epoch = stats
                if epoch == 0:
                    _check_health(run, final=False)
                last = epoch + 1 == cfg.epochs
                evaluated = (epoch + 1) % cfg.eval_every == 0 or last
                if evaluated:
                    run.eval_acc = _evaluate(run, run.eval_set, tta=None)
                _log_epoch(run, epoch, size, stats, evaluated, progress)
                failpoint("epoch.logged")
                signum = stop.agreed(accelerator)
                if (epoch + 1) % cfg.checkpoint_every == 0 or last or signum:
                    _checkpoint(run, epoch)
                if signum and not last:
                    raise Stopped(
                        f"{signal.Signals(signum).name} received; checkpoint saved after epoch {epoch + 1} of "
                        f"{cfg.epochs} in {run.run_dir / 'state'}; {again} to continue",
                        signum,
                    )
        return _finish(run)
    except engine.Diverged as err:
        raise UserError(f"{err}; {_what_is_kept(run, again)}") from None
    except KeyboardInterrupt:
        raise _interrupted(run, again) from None
    finally:
        if run.tracker is not None:
            run.tracker.finish()
        run.lock.release()


def train_epoch(run: Run, epoch: int, progress) -> tuple[int, dict]:
    """Epoch ``epoch`` of ``run``: its resolution, its images (all, or the selected ones), the whitening bias trained
    or held, the loop, and the record of each image's loss shared. Returns the resolution and the epoch's stats;
    ``run.step`` moves on. (``bench.student_speed`` times exactly this.)"""
    cfg = run.recipe.train
    size = engine.epoch_resolution(epoch, cfg.epochs, cfg.progressive_min_size, cfg.progressive_until)
    if cfg.whiten_bias_epochs:
        train_whitening_bias(run.model, trains=epoch < cfg.whiten_bias_epochs)
    batches = engine.epoch_batches(
        _epoch_data(run, epoch), run.recipe.augment, cfg.batch_size, run.recipe.seed, epoch, run.accelerator,
        cfg.channels_last, size, _selection(run, epoch), run.steps_per_epoch,
    )  # fmt: skip
    stats = engine.train_one_epoch(
        run.forward, batches, run.steps_per_epoch, run.criterion, run.optimizer, run.schedule, run.accelerator,
        run.ema, epoch=epoch, step=run.step, progress=progress,
        on_pace=(lambda s: _estimate(run, s)) if epoch == run.first_epoch else None, hardness=run.hardness,
    )  # fmt: skip
    if run.hardness is not None:
        run.hardness.sync(run.accelerator)
    run.step = stats.pop("step")
    return size, stats


@dataclass
class Inputs:
    """What :func:`_check_inputs` found valid: the model, the data splits and (for KD) the cache."""

    model: torch.nn.Module
    train: Split
    val: Split | None
    test: Split
    cache: LogitCache | None
    teacher_cache: str | Path | None
    unlabeled: Split | None = (
        None  # the transfer set (a student's kd.unlabeled), distilled on after the training images
    )


def _setup(recipe: Recipe, role: str, run_dir: Path, accelerator: Accelerator, resume: bool, teacher_cache) -> Run:
    """Check every input (nothing is written until all pass), then take the run dir and build the run."""
    accelerator.free_memory()  # one Accelerator may serve several runs: each checkpoint must hold this run's alone
    inputs = _check_inputs(recipe, role, run_dir, accelerator, resume, teacher_cache)
    lock = _take(run_dir, accelerator)
    try:
        begin_run(run_dir, recipe, resume, accelerator.is_main_process)  # the first write, once the inputs are checked
        run = _build(recipe, role, run_dir, accelerator, lock, inputs, resume)
        if resume:
            done = load_checkpoint(accelerator, run_dir, run.ema, run.hardness)
            run.first_epoch, run.step, run.seconds = done["epoch"], done["step"], done["wall_seconds"]
            run.eval_acc = done.get("eval_acc", done.get("test_acc"))
            if accelerator.is_main_process:
                rewrite_metrics(run_dir, run.first_epoch)
        elif accelerator.is_main_process:
            key = inputs.cache.key if inputs.cache is not None else None
            info = run_info(
                recipe,
                str(accelerator.device),
                role,
                inputs.train,
                inputs.val,
                inputs.teacher_cache,
                inputs.unlabeled,
                key,
            )
            write_json(run_dir / "run.json", info)
        run.schedule.step_update(num_updates=run.step)
        if recipe.train.log_with == "tensorboard" and accelerator.is_main_process:
            run.tracker = _tensorboard(run_dir)
        cfg = recipe.train
        run.say(
            f"[bold]{role} {recipe.model.name}[/]: Trainable parameters: {run.params:,} | {len(inputs.train):,} train"
            + (f" (the {len(inputs.test):,} test images among them)" if recipe.data.train_on_test else "")
            + (f" + {len(inputs.unlabeled):,} unlabelled" if inputs.unlabeled is not None else "")
            + f" / {len(inputs.val or ()):,} val / {len(inputs.test):,} test images | device {accelerator.device} "
            f"x{accelerator.num_processes} | precision {_precision_label(cfg.mixed_precision, accelerator)}"
            + (f" | Muon's Newton-Schulz in {_ns_precision(cfg, accelerator)}" if cfg.optimizer == "muon" else "")
            + (f" | resuming after epoch {run.first_epoch}" if resume else "")
        )
        return run
    except BaseException:
        lock.release()  # a run that never started must not hold its dir
        raise


def _precision_label(setting: str, accelerator: Accelerator) -> str:
    """What the run computes in and why: the recipe's choice, unless this process's Accelerator already had one."""
    wanted = Compute.resolve(setting, accelerator.device).precision
    if wanted.mode == accelerator.mixed_precision:
        return wanted.label
    running = "fp32" if accelerator.mixed_precision == "no" else accelerator.mixed_precision
    return f"{running} (this process's Accelerator; the recipe asks for {wanted.label})"


def _ns_precision(cfg, accelerator: Accelerator) -> str | None:
    """The dtype of Muon's Newton-Schulz iterations in this run (``train.muon_ns_precision`` resolved), or None."""
    return resolve_ns_precision(cfg.muon_ns_precision, accelerator.device.type) if cfg.optimizer == "muon" else None


def _check_inputs(
    recipe: Recipe, role: str, run_dir: Path, accelerator: Accelerator, resume: bool, teacher_cache
) -> Inputs:
    """The model (a student under the cap), the run dir (new, or resumable with this recipe and data),
    the data, and the cache (fitting this recipe); each refusal is one UserError and writes nothing."""
    set_seed(recipe.seed)  # before model init and any random draw
    if recipe.train.log_with == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise UserError(
            "train.log_with=tensorboard needs TensorBoard, which is not installed: pip install 'distill[tensorboard]' "
            "(or pip install tensorboard), or drop the override"
        )
    model = create_model(recipe.model.name, recipe.model.kwargs, student=role == "student")
    kd = role == "student" and recipe.kd.alpha > 0
    if role == "student" and recipe.kd.unlabeled and not kd:
        raise UserError(
            "kd.unlabeled needs distillation: unlabelled images have no label to train on with kd.alpha=0; "
            "set kd.alpha > 0 (and --teacher-cache), or drop kd.unlabeled"
        )
    if kd and teacher_cache is None:
        raise UserError(
            f"recipe '{recipe.name}' distils (kd.alpha={recipe.kd.alpha}) and needs --teacher-cache DIR; "
            f"build one with distill/train_teacher.py, or use recipe 'ce'"
        )
    inputs = [Path(recipe.data.dir), *(Path(f) for f in recipe.kd.unlabeled)] + ([Path(teacher_cache)] if kd else [])
    check_distinct(run_dir, inputs, words().run_dir)
    if resume and accelerator.is_main_process:
        recover_state(run_dir)  # a kill during a checkpoint swap leaves state.tmp / state.old
    accelerator.wait_for_everyone()
    check_run_dir(run_dir, recipe, resume)
    train_split, val_split, test_split = load_data(recipe.data)
    unlabeled = load_transfer_set(recipe.kd.unlabeled if kd else [], train_split, accelerator.is_main_process)
    pool = len(train_split) + (len(unlabeled) if unlabeled is not None else 0)
    if recipe.train.batch_size > pool and accelerator.is_main_process:
        warn(
            f"train.batch_size {recipe.train.batch_size} is larger than the {pool:,} training images: each epoch is one "
            f"step of {pool:,} images, at the LR set for {recipe.train.batch_size} (set train.batch_size <= {pool:,})"
        )
    _check_selection(recipe.train, pool, accelerator.num_processes)
    if resume:
        check_same_data(run_dir, train_split, unlabeled)
    cache = None
    if kd:
        cache = LogitCache.load(teacher_cache)
        cache.check_matches(train_split, recipe.augment, recipe.cache.views, recipe.data, unlabeled, recipe.cache.seed)
    return Inputs(model, train_split, val_split, test_split, cache, teacher_cache if kd else None, unlabeled)


def _check_selection(cfg, pool: int, world: int) -> None:
    """Selective epochs (``train.select_fraction``) need two images per process a step."""
    if cfg.select_fraction == 1:
        return
    keep, steps = round(cfg.select_fraction * pool), engine.steps_per_epoch(pool, cfg.batch_size, world)
    if keep < 2 * world * steps:
        raise UserError(
            f"train.select_fraction={cfg.select_fraction} keeps {keep} of {pool} images for {steps} steps an epoch, "
            f"under 2 per process a step: raise it"
        )


def _build(
    recipe: Recipe, role: str, run_dir: Path, accelerator: Accelerator, lock: RunLock, inputs: Inputs, resume: bool
) -> Run:
    """Model, optimiser, schedule, EMA and loss on the device, and the data there too."""
    cfg, model, device = recipe.train, inputs.model, accelerator.device
    if not resume and hasattr(model, "init_from_data"):  # e.g. a whitening layer, set from training images
        model.init_from_data(normalize(torch.from_numpy(inputs.train.images[:5000]), channels_last=False))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.to(device), cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=cfg.ema_decay, device=device) if cfg.ema_decay else None
    pool = inputs.train if inputs.unlabeled is None else inputs.train.join(inputs.unlabeled)  # labels -1 after
    steps = engine.steps_per_epoch(len(pool), cfg.batch_size, accelerator.num_processes)
    images, labels = engine.to_device_data(*pool.arrays(), device)
    return Run(
        recipe=recipe,
        role=role,
        run_dir=run_dir,
        accelerator=accelerator,
        lock=lock,
        model=model,
        forward=torch.compile(model) if cfg.compile else model,
        params=count_trainable(model),
        optimizer=optimizer,
        schedule=StepSchedule(cfg, optimizer, steps * cfg.epochs, steps),
        ema=ema,
        criterion=make_criterion(recipe, distils=inputs.cache is not None),
        cache=inputs.cache,
        train=inputs.train,
        images=images,
        labels=labels,
        eval_set=engine.to_device_data(*(inputs.val or inputs.test).arrays(), device),
        test_set=engine.to_device_data(*inputs.test.arrays(), device),
        test_fingerprint=inputs.test.fingerprint(),
        steps_per_epoch=steps,
        teacher_cache=inputs.teacher_cache,
        unlabeled=inputs.unlabeled,
        hardness=engine.Hardness(len(pool), device) if cfg.select_fraction < 1 else None,
    )


def make_criterion(recipe: Recipe, distils: bool) -> KDLoss:
    """The recipe's loss: its ``kd`` section's KD term (none without a cache) and the CE's label smoothing."""
    kd = recipe.kd
    return KDLoss(
        alpha=kd.alpha if distils else 0.0,
        temperature=kd.temperature,
        loss_scale=kd.loss_scale,
        label_smoothing=recipe.train.label_smoothing,
        loss=kd.loss,
        std_temperature=kd.std_temperature,
        std_weight=kd.std_weight,
        dkd_alpha=kd.dkd_alpha,
        dkd_beta=kd.dkd_beta,
        dkd_warmup=kd.dkd_warmup,
        dist_beta=kd.dist_beta,
        dist_gamma=kd.dist_gamma,
    )


def _tensorboard(run_dir: Path):
    """Accelerate's TensorBoard tracker writing into ``run_dir/tb`` (a resumed run adds event files beside the first)."""
    from accelerate.tracking import TensorBoardTracker

    tracker = TensorBoardTracker("tb", run_dir)
    if hasattr(tracker, "start"):  # Accelerate >= 1.6 opens the writer in start(), older ones in __init__
        tracker.start()
    return tracker


def _take(run_dir: Path, accelerator: Accelerator) -> RunLock:
    """The run dir's lock, taken by the main process; every process fails alike when it is held."""
    lock = RunLock(run_dir)
    error = None
    if accelerator.is_main_process:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except OSError:
            pass  # an unwritable dir: begin_run says so in its own words
        except UserError as err:
            error = err
    refused = torch.tensor([error is not None], device=accelerator.device)
    if accelerator.num_processes > 1:
        refused = accelerator.reduce(refused.long(), "sum")
    if bool(refused.item()):
        raise error or UserError(f"{run_dir} is in use by another run")
    return lock


def _epoch_data(run: Run, epoch: int) -> engine.EpochData:
    """The training set with this epoch's views: replayed from the cache (and its logits), or fresh ones."""
    teacher_logits, views = None, None
    if run.cache is not None:
        logits, arrays = run.cache.epoch_arrays(epoch)
        teacher_logits = torch.from_numpy(logits).to(run.accelerator.device)
        views = {k: torch.from_numpy(v).to(run.accelerator.device) for k, v in arrays.items()} if arrays else None
    if views is None:
        recipe = run.recipe
        views = engine.fresh_views(len(run.labels), recipe.augment, recipe.seed, epoch, run.accelerator.device)
    return engine.EpochData(run.images, run.labels, views, teacher_logits)


def _selection(run: Run, epoch: int) -> torch.Tensor | None:
    """The images ``epoch`` trains on, when it selects (``train.select_fraction``); None: every image."""
    cfg = run.recipe.train
    if run.hardness is None or epoch < cfg.select_after:
        return None
    return run.hardness.subset(cfg.select_fraction, cfg.select_random, run.recipe.seed, epoch)


def _estimate(run: Run, seconds_per_step: float) -> None:
    """One line, early: how long the whole run will take at this pace (and, on a CPU, how to try it first)."""
    cfg = run.recipe.train
    left = (cfg.epochs - run.first_epoch) * run.steps_per_epoch
    # a selecting epoch's step trains on select_fraction of a full step's images, and takes about that share of it
    shares = [engine.epoch_share(e, cfg.select_fraction, cfg.select_after) for e in range(run.first_epoch, cfg.epochs)]
    total = run.steps_per_epoch * seconds_per_step * sum(shares) / shares[0]
    hours, minutes = divmod(round(total / 60), 60)
    when = f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"
    epochs = cfg.epochs - run.first_epoch
    line = (
        f"estimate: {seconds_per_step:.2f} s a step, so the {epochs} epoch{'s' if epochs != 1 else ''} left "
        f"({left:,} steps) take about {when} on this device, besides evaluation"
    )
    if run.accelerator.device.type == "cpu" and total > 30 * 60:
        smoke = "teacher_smoke" if run.role == "teacher" else ("kd_smoke" if run.cache is not None else "ce_smoke")
        line += f"; on a CPU that is long: --recipe {smoke} tries the same pipeline in about a minute"
    if run.accelerator.is_main_process:
        print(line, flush=True)


def _check_health(run: Run, final: bool, eval_acc: float | None = None) -> None:
    """Say when the run is diverging (after its first epoch) or did not learn (at the end): :mod:`distill.health`.
    The final verdict is the summary's ``health`` (``learned`` false with it)."""
    stats = run.last_epoch or {}
    classes = getattr(run.accelerator.unwrap_model(run.model), "num_classes", 10)
    message = health.verdict(stats.get("train_ce"), stats.get("train_acc"), eval_acc, classes, final)
    if message and run.accelerator.is_main_process:
        warn(message)
    if final:
        run.health = message


def _evaluate(run: Run, split: tuple[torch.Tensor, torch.Tensor], tta) -> float:
    cfg = run.recipe.train
    return engine.evaluate(run.evaluated_model(), *split, run.accelerator, cfg.eval_batch_size, tta, cfg.channels_last)


def _predict(run: Run, images: torch.Tensor, tta) -> torch.Tensor:
    cfg = run.recipe.train
    return engine.predict_classes(run.evaluated_model(), images, run.accelerator, cfg.eval_batch_size, tta,
                                  cfg.channels_last)  # fmt: skip


def _log_epoch(run: Run, epoch: int, size: int, stats: dict, evaluated: bool, progress) -> None:
    """One metrics.jsonl line (``val_acc`` / ``test_acc`` null on epochs not evaluated) and one console line."""
    line = {
        "epoch": epoch + 1,
        "resolution": size,
        **{k: round(v, 6) for k, v in stats.items()},
        run.eval_key: round(run.eval_acc, 6) if evaluated else None,
    }
    if run.tracker is not None:  # the same numbers, as TensorBoard scalars at step = epoch
        scalars = {"train/loss": stats["train_loss"], "train/ce": stats["train_ce"], "train/kd": stats["train_kd"],
                   "train/acc": stats["train_acc"], "lr": stats["lr"], "img_per_s": stats["img_per_s"]}  # fmt: skip
        if evaluated:
            scalars[f"{run.eval_key.removesuffix('_acc')}/acc"] = run.eval_acc
        run.tracker.log(scalars, step=epoch + 1)
    if run.accelerator.is_main_process:
        append_metrics(run.run_dir, line)
        name = run.eval_key.removesuffix("_acc")
        progress.console.print(
            f"epoch {epoch + 1}/{run.recipe.train.epochs}  loss {stats['train_loss']:.4f}  "
            f"train {stats['train_acc']:.2%}  {name} {f'{run.eval_acc:.2%}' if evaluated else '-'}  "
            f"{stats['img_per_s']:,.0f} img/s  {stats['seconds']:.1f}s"
        )


def _checkpoint(run: Run, epoch: int) -> None:
    if not all(bool(p.detach().isfinite().all()) for p in run.model.parameters()):
        raise engine.Diverged(f"weights became NaN or inf in epoch {epoch + 1}; lower train.lr")
    record = {"epoch": epoch + 1, "step": run.step, "wall_seconds": run.seconds, "eval_acc": run.eval_acc}
    save_checkpoint(run.accelerator, run.run_dir, record, run.ema, run.hardness)


def _what_is_kept(run: Run, again: str) -> str:
    """After a divergence: the checkpoint a rerun continues from, or that there is none (a claim only when true)."""
    state = run.run_dir / STATE
    if (state / PROGRESS).is_file():
        done = json.loads((state / PROGRESS).read_text())["epoch"]
        return f"the checkpoint after epoch {done} is kept in {state} ({again} continues from it)"
    return "no checkpoint was written before it, so nothing is kept to continue from"


def _interrupted(run: Run, again: str) -> Stopped:
    """Ctrl-C: what can be done next depends on whether a checkpoint exists."""
    if (run.run_dir / "state").is_dir():
        return Stopped(f"interrupted; {again} to continue from the last checkpoint in {run.run_dir}", 2)
    return Stopped(
        f"interrupted before the first checkpoint, so there is nothing to resume; run the same command again"
        f"{' (without --resume)' if words().run_dir == '--output-dir' else ''} to start over in {run.run_dir}",
        2,
    )


def _finish(run: Run) -> Result:
    """Score the test set once (with the recipe's TTA), save the evaluated weights and the summary.

    A run that trained on the test split (``data.train_on_test``) scores its held-out split instead and
    records no test accuracy: one on images it trained on would be no measurement."""
    recipe, accelerator = run.recipe, run.accelerator
    final_model = run.ema.module if run.ema is not None else accelerator.unwrap_model(run.model)
    on_test = recipe.data.train_on_test
    predicted = None if on_test else _predict(run, run.test_set[0], recipe.tta)
    test_acc = None if on_test else (predicted == run.test_set[1]).double().mean().item()
    _check_health(run, final=True, eval_acc=test_acc if test_acc is not None else run.eval_acc)
    summary = {
        "role": run.role,
        "test_accuracy": test_acc,
        **({"val_accuracy": _evaluate(run, run.eval_set, recipe.tta), "trained_on_test": True} if on_test else {}),
        "tta": recipe.tta.to_dict(),
        f"{run.eval_key.removesuffix('_acc')}_accuracy_no_tta": run.eval_acc,
        "trainable_params": run.params,
        "model": recipe.model.name,
        "epochs": recipe.train.epochs,
        "wall_seconds": round(run.seconds, 3),
        "train_images": len(run.train),
        "unlabeled_images": len(run.unlabeled) if run.unlabeled is not None else 0,
        "transfer_set": (run.cache.meta.get("unlabeled") or {}).get("files") if run.cache is not None else None,
        "val_images": recipe.data.val_size,
        "test_images": len(run.test_set[1]),
        "device": torch.cuda.get_device_name() if accelerator.device.type == "cuda" else str(accelerator.device),
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "muon_ns_precision": _ns_precision(recipe.train, accelerator),
        "teacher_cache": str(run.teacher_cache) if run.teacher_cache else None,
        "learned": run.health is None,  # health.verdict's: False when the run diverged or stayed at chance
        "health": run.health,
        "recipe": recipe.to_dict(),
    }
    if run.tracker is not None and test_acc is not None:
        run.tracker.log({"final/test_acc": test_acc}, step=recipe.train.epochs)
    if accelerator.is_main_process:
        save_weights(final_model, run.run_dir / WEIGHTS)
        failpoint("run.weights")
        if predicted is not None:  # a report reads them rather than predicting the test set again
            record = save_test_predictions(run.run_dir, predicted.cpu().numpy(), run.test_fingerprint, summary["tta"])
            summary["test_predictions"] = record
        write_json(run.run_dir / "summary.json", summary)
        _print_summary(summary, run.run_dir)
    accelerator.wait_for_everyone()
    return Result(run.run_dir, test_acc, run.params, summary, final_model, accelerator)


def _print_summary(summary: dict, run_dir: Path) -> None:
    tta = TTASpec(**summary["tta"])
    table = Table(title=f"{summary['role']} run: {run_dir}")
    table.add_column("field")
    table.add_column("value", justify="right")
    rows = [
        ("model", summary["model"]),
        ("trainable parameters", f"{summary['trainable_params']:,}"),
        ("epochs", str(summary["epochs"])),
        ("train seconds", f"{summary['wall_seconds']:.1f}"),
        ("device", f"{summary['device']} x{summary['num_processes']}"),
    ]
    if summary["unlabeled_images"]:
        rows.append(("transfer set (unlabelled, KD only)", f"{summary['unlabeled_images']:,} images"))
    if summary.get("trained_on_test"):
        rows.append((f"validation accuracy (TTA: {tta.label})", f"{summary['val_accuracy']:.2%}"))
    else:
        rows.append((f"test accuracy (TTA: {tta.label})", f"{summary['test_accuracy']:.2%}"))
    if summary.get("learned") is False:
        rows.append(("learned", "NO: " + summary["health"].split(":")[0]))
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    if summary.get("trained_on_test"):
        print(
            f"Final validation accuracy: {100 * summary['val_accuracy']:.2f}% ({summary['val_images']:,} held-out images)"
        )
        print(
            "The CIFAR-10 test split was trained on (data.train_on_test=true): there is no test accuracy, and the "
            "held-out split above is this run's measurement"
        )
    else:
        print(f"Final test accuracy: {100 * summary['test_accuracy']:.2f}%")
    print(f"Trainable parameters: {summary['trainable_params']}", flush=True)
