"""One epoch of training and one evaluation, each reading top to bottom.

Data lives on the device as uint8; a batch is an index gather plus :func:`~distill.augment.apply_views`.
Processes split every global batch by ``rank::world`` (and the test set likewise), so no image is
counted twice and no DataLoader or worker is involved.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn

from distill.augment import (
    AugmentSpec,
    TTASpec,
    apply_views,
    mix_targets,
    normalize,
    sample_views,
    seeded_generator,
    shift,
)
from distill.compute import Compute
from distill.errors import UserError
from distill.failpoints import failpoint
from distill.models import create_model


@dataclass
class EpochData:
    """The training set on the device, plus (optionally) the teacher's cached logits for this epoch."""

    images: torch.Tensor  # (N, 32, 32, 3) uint8 on the device
    labels: torch.Tensor  # (N,) int64 on the device
    views: dict[str, torch.Tensor]  # view parameters, each (N,)
    teacher_logits: torch.Tensor | None  # (N, 10) float16 on the device, from the cache


@dataclass
class Batch:
    """One process's part of a global batch: the views, their labels, and what mixing and the cache add."""

    index: torch.Tensor  # (B,) the images' positions in the training set
    x: torch.Tensor  # (B, 3, H, W) float32, normalised
    y: torch.Tensor  # (B,) labels of the images themselves
    teacher_logits: torch.Tensor | None = None  # (B, 10) float16: the teacher's logits on exactly x
    y_partner: torch.Tensor | None = None  # (B,) labels of the images mixed in (mixup / cutmix)
    lam: torch.Tensor | None = None  # (B,) weight of y in the loss; 1 - lam weighs y_partner


class StopRequest:
    """Catch SIGTERM / SIGUSR1 (a pre-emption, a scheduler's time-limit warning) during training or caching.

    A run then finishes its epoch, checkpoints and stops with :class:`~distill.errors.Stopped`
    (exit code 128 + signal), instead of dying mid-epoch and losing the work since the last
    checkpoint; a cache stops after its view set, writing nothing. Each process may receive the signal;
    :meth:`agreed` makes every process decide alike.
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


class Diverged(UserError):
    """The loss or the weights became NaN or inf; the trainer adds what a rerun can continue from."""


def epoch_batches(
    data: EpochData,
    spec: AugmentSpec,
    batch_size: int,
    seed: int,
    epoch: int,
    accelerator: Accelerator,
    channels_last: bool = True,
    size: int = 32,
    subset: torch.Tensor | None = None,
    steps: int = 0,
):
    """Yield this process's :class:`Batch` of each global batch of one epoch.

    The permutation is drawn from a generator seeded by (seed, epoch), the same on all processes;
    each process keeps ``indices[rank::world]`` of every global batch. A final batch too small to
    give every process two images is dropped (BatchNorm needs two). With ``size`` < 32 the augmented
    batch is downscaled (antialiased bilinear) to ``size`` x ``size`` (progressive resizing).

    With ``subset`` (image positions, the same on every process; :meth:`Hardness.subset`), the epoch covers only
    those images, in ``steps`` global batches of near-equal size: as many optimiser steps as a full epoch, each
    on a smaller batch.
    """
    n = len(data.labels)
    perm = torch.randperm(n, generator=seeded_generator("order", seed, epoch)).to(data.images.device)
    rank, world = accelerator.process_index, accelerator.num_processes
    if subset is not None:
        order = subset.to(data.images.device)[perm[perm < len(subset)]]  # the subset, shuffled by the same draw
        chunks = torch.tensor_split(order, steps)
    else:
        chunks = [perm[start : start + batch_size] for start in range(0, n, batch_size)]
    for i, index in enumerate(chunks):
        if len(index) < 2 * world and i > 0:
            break
        index = index[rank::world]
        x = apply_views(data.images, data.views, index, spec, channels_last)
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        teacher = data.teacher_logits[index] if data.teacher_logits is not None else None
        yield Batch(index, x, data.labels[index], teacher, *mix_targets(data.labels, data.views, index))


def epoch_resolution(epoch: int, epochs: int, min_size: int, until: float) -> int:
    """Progressive resizing: the training resolution of ``epoch``, rising linearly from ``min_size``
    at the first epoch to 32 at ``until`` x ``epochs`` (a multiple of 4; 32 when ``min_size`` is 0)."""
    end = until * epochs
    if not min_size or min_size >= 32 or epoch >= end:
        return 32
    return min(32, max(min_size, int(min_size + (32 - min_size) * epoch / end) // 4 * 4))


class Hardness:
    """Each training image's loss when it was last trained on: which images a selecting epoch keeps.

    Selective backprop with stale losses (Jiang et al. 2019, "Accelerating deep learning by focusing on the
    biggest losers"): the loss each image had in the forward pass that trained on it is kept, at no extra cost,
    and an epoch after ``train.select_after`` trains on a ``train.select_fraction`` of the images: the hardest by
    that record, plus a ``train.select_random`` share of its images drawn from the rest, so that an image once
    easy is seen again and its record renewed. An image never trained on ranks first. The measure is the loss's
    own per-image value (:class:`~distill.losses.KDLoss`, ``per_image``).
    """

    def __init__(self, n: int, device: torch.device):
        self.loss = torch.full((n,), math.inf, device=device)
        self._fresh = torch.zeros(n, device=device)
        self._seen = torch.zeros(n, device=device)

    def record(self, index: torch.Tensor, per_image: torch.Tensor) -> None:
        """This process's images of one step and their losses (detached, float32)."""
        self._fresh[index] = per_image.detach().float()
        self._seen[index] = 1.0

    def sync(self, accelerator: Accelerator) -> None:
        """At the end of an epoch: every process's records into :attr:`loss`, the same on all of them."""
        fresh, seen = self._fresh, self._seen
        if accelerator.num_processes > 1:  # each image was trained on by one process this epoch: sums are its values
            fresh, seen = accelerator.reduce(fresh, "sum"), accelerator.reduce(seen, "sum")
        self.loss = torch.where(seen > 0, fresh, self.loss)
        self._fresh.zero_()
        self._seen.zero_()

    def subset(self, fraction: float, random_share: float, seed: int, epoch: int) -> torch.Tensor:
        """The positions of the images this epoch trains on (sorted; the same on every process)."""
        n = len(self.loss)
        keep = max(2, round(fraction * n))
        hard = round((1.0 - random_share) * keep)
        ranked = torch.argsort(self.loss.cpu(), descending=True, stable=True)
        rest = ranked[hard:]
        drawn = rest[torch.randperm(len(rest), generator=seeded_generator("select", seed, epoch))[: keep - hard]]
        return torch.sort(torch.cat([ranked[:hard], drawn])).values

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"loss": self.loss.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["loss"].shape != self.loss.shape:
            raise ValueError(
                f"the checkpoint's record of losses holds {len(state['loss'])} images, not {len(self.loss)}"
            )
        self.loss = state["loss"].to(self.loss.device).float()


def epoch_share(epoch: int, select_fraction: float = 1.0, select_after: int = 0) -> float:
    """The share of the images ``epoch`` trains on, about what it costs of a full one: ``train.select_fraction``
    from epoch ``select_after`` on (:meth:`Hardness.subset`), every image before."""
    return select_fraction if epoch >= select_after else 1.0


def image_epochs(epochs: int, select_fraction: float = 1.0, select_after: int = 0) -> float:
    """Full epochs' worth of images a run of ``epochs`` trains on (each as its :func:`epoch_share`)."""
    return sum(epoch_share(e, select_fraction, select_after) for e in range(epochs))


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    steps = math.ceil(n / batch_size)
    if steps > 1 and n - (steps - 1) * batch_size < 2 * world:
        steps -= 1
    return steps


def fresh_views(n: int, spec: AugmentSpec, seed: int, epoch: int, device: torch.device) -> dict[str, torch.Tensor]:
    views = sample_views(n, spec, seeded_generator("views", seed, epoch), index=epoch, seed=seed)
    return {k: v.to(device) for k, v in views.items()}


def make_progress(accelerator: Accelerator) -> Progress:
    """The epoch's progress bar: on the main process, on a terminal (in a log it would print blank lines)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.2%}  {task.fields[ips]:,.0f} img/s"),
        TimeRemainingColumn(),
        disable=not accelerator.is_main_process or not Console().is_terminal,
        transient=False,
    )


class EpochTimer:
    """Seconds of device work for an epoch: CUDA events on a GPU, the wall clock elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start_event = torch.cuda.Event(enable_timing=True)
            self.end_event = torch.cuda.Event(enable_timing=True)
            self.start_event.record()
        self.start = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end_event.record()
            self.end_event.synchronize()
            return self.start_event.elapsed_time(self.end_event) / 1000.0
        return time.perf_counter() - self.start


def train_one_epoch(
    model,
    batches,
    num_steps: int,
    criterion,
    optimizer,
    scheduler,
    accelerator: Accelerator,
    ema,
    epoch: int,
    step: int,
    progress: Progress,
    log_every: int = 20,
    on_pace=None,
    hardness: Hardness | None = None,
) -> dict:
    """Train for one epoch; returns metrics, and raises UserError on a non-finite loss.

    Args:
        batches: iterable of :class:`Batch` from :func:`epoch_batches`.
        num_steps: batches in the epoch (for the progress bar).
        step: optimiser updates done before this epoch (drives the per-update schedule).
        hardness: where each image's loss is recorded (:class:`Hardness`; the caller syncs it after the epoch).
        on_pace: called once, ``on_pace(seconds_per_step)``, from the steps after the first (which may compile), at
            step 3 on a CPU and at ``log_every`` on a GPU (or at the epoch's last step, if sooner): what an estimate
            of the whole run's time is made from.
    """
    model.train()
    task = progress.add_task(f"epoch {epoch + 1}", total=num_steps, loss=0.0, acc=0.0, ips=0.0)
    # loss and kd (times images), ce (times labelled images), correct, labelled images; float32 holds 60k exactly
    sums = torch.zeros(5, device=accelerator.device)
    seen = 0
    timer = EpochTimer(accelerator.device)
    start = time.perf_counter()
    first_step = 0.0
    # the estimate: on a CPU after 3 steps (a 60-epoch teacher's 20 took over 100 s), on a GPU after log_every
    pace_at = min(3 if accelerator.device.type == "cpu" else log_every, num_steps)
    for i, batch in enumerate(batches):
        with accelerator.autocast():
            logits = model(batch.x)
        done = (step + 1) / scheduler.total_steps  # the run's fraction done after this step (DKD's warm-up)
        losses = criterion(logits, batch.y, batch.teacher_logits, batch.y_partner, batch.lam, progress=done)
        if hardness is not None:
            hardness.record(batch.index, losses["per_image"])
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(losses["loss"])
        optimizer.step()
        step += 1
        scheduler.step_update(num_updates=step)
        if ema is not None:
            ema.update(model, step=step)
        failpoint("train.step")
        if i == 0:  # the first step holds torch.compile's compilation (and the allocator's warm-up)
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            first_step = time.perf_counter() - start

        n, labelled = len(batch.y), (batch.y >= 0).sum().float()  # a transfer set's images have label -1
        correct = (logits.detach().argmax(-1) == batch.y).sum().float()
        sums += torch.stack([losses["loss"].detach() * n, losses["ce"] * labelled, losses["kd"] * n, correct, labelled])
        seen += n
        if (i + 1) % log_every == 0 or i + 1 == num_steps:
            loss_sum, correct_sum, labelled_sum = sums[[0, 3, 4]].tolist()  # one sync every log_every steps
            loss_now, acc_now = loss_sum / max(seen, 1), correct_sum / max(labelled_sum, 1)
            if not math.isfinite(loss_now):
                raise Diverged(
                    f"loss became {loss_now} in epoch {epoch + 1}, step {i + 1}; lower train.lr or use "
                    f"train.mixed_precision=no"
                )
            ips = seen * accelerator.num_processes / max(time.perf_counter() - start, 1e-9)
            progress.update(task, completed=i + 1, loss=loss_now, acc=acc_now, ips=ips)
        if on_pace is not None and i + 1 == pace_at and i > 0:
            if accelerator.device.type == "cuda":
                torch.cuda.synchronize()
            on_pace((time.perf_counter() - start - first_step) / i)
    seconds = timer.stop()
    totals = accelerator.reduce(torch.cat([sums, sums.new_tensor([seen])]), "sum")
    loss, ce, kd, correct, labelled, images = totals.tolist()
    progress.remove_task(task)
    return {
        "train_loss": loss / images,
        "train_ce": ce / max(labelled, 1),
        "train_kd": kd / images,
        "train_acc": correct / max(labelled, 1),  # of the labelled images
        "images": int(images),
        "img_per_s": images / seconds,
        "seconds": seconds,
        "first_step_seconds": first_step,
        "lr": optimizer.param_groups[0]["lr"],
        "step": step,
    }


def probe_rate(recipe, accelerator, train: bool = True, steps: int = 2) -> float:
    """Images per second of ``recipe``'s model on this device, fresh and on random images: its training step
    (:func:`_training_rate`) or, with ``train=False``, its inference; a rough measure (a few seconds on a CPU) from
    which distill-run estimates its stages before the first starts."""
    batch = min(recipe.train.batch_size, 256 if accelerator.device.type == "cuda" else 64)
    memory = torch.channels_last if recipe.train.channels_last else torch.contiguous_format
    model = create_model(recipe.model.name, recipe.model.kwargs).to(accelerator.device, memory_format=memory)
    x = torch.randn(batch, 3, 32, 32, device=accelerator.device).to(memory_format=memory)
    if train:
        return _training_rate(model.train(), x, accelerator, steps)
    model.eval()

    def infer():
        with torch.inference_mode(), accelerator.autocast():
            return model(x)

    return steps * batch / timed(infer, steps, accelerator.device)


def timed(step, steps: int, device: torch.device) -> float:
    """Seconds of ``steps`` calls of ``step`` after one untimed warm-up call (oneDNN's primitives, the allocator),
    synchronised on a GPU."""
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bare_step(recipe, trained: torch.nn.Module, x: torch.Tensor, accelerator, steps: int = 8) -> float:
    """Images per second of forward + cross-entropy + backward + plain SGD on ``x``: a fresh build of the
    recipe's model holding ``trained``'s weights (a deepcopy would keep Accelerate's forward wrapper, bound
    to the original module), in the recipe's memory format, under the accelerator's autocast."""
    model = create_model(recipe.model.name, recipe.model.kwargs)
    model.load_state_dict(accelerator.unwrap_model(trained).state_dict())
    if recipe.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return _training_rate(model.to(x.device).train(), x, accelerator, steps)


def _training_rate(model: torch.nn.Module, x: torch.Tensor, accelerator, steps: int) -> float:
    """Images per second of ``model``'s forward, cross-entropy, backward and Nesterov SGD step on ``x``."""
    sgd = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9, nesterov=True)
    y = torch.randint(0, 10, (len(x),), device=x.device)

    def step():
        with accelerator.autocast():
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()

    return steps * len(x) / timed(step, steps, x.device)


def tta_logits(model, x: torch.Tensor, tta: TTASpec | None) -> torch.Tensor:
    """Float32 logits of a normalised batch, averaged over the views of ``tta`` (see :class:`TTASpec`)."""

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        out = model(v).float()
        return 0.5 * (out + model(torch.flip(v, dims=[3])).float()) if tta is not None and tta.flip else out

    if tta is None or not tta.translate:
        return mirrored(x)
    px = tta.translate
    return 0.5 * mirrored(x) + 0.25 * (mirrored(shift(x, -px, -px)) + mirrored(shift(x, px, px)))


@torch.inference_mode()
def predict_logits(
    model,
    images: torch.Tensor,
    batch_size: int,
    accelerator: Accelerator | None = None,
    tta: TTASpec | None = None,
    channels_last: bool = True,
    on_batch=None,
    compute: Compute | None = None,
) -> torch.Tensor:
    """Logits (N, C) in float32 for uint8 (N, 32, 32, 3) images on the model's device, with ``tta``'s views.

    Autocast is the ``accelerator``'s, else ``compute``'s (float32 without either). ``on_batch(n)`` is called
    after each batch of n images (a progress bar)."""
    outputs = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start : start + batch_size], channels_last)
        context = (
            accelerator.autocast() if accelerator is not None else compute.autocast() if compute else nullcontext()
        )
        with context:
            outputs.append(tta_logits(model, x, tta))
        if on_batch is not None:
            on_batch(len(x))
    return torch.cat(outputs) if outputs else torch.empty(0, 10, device=images.device)


MIN_BN_IMAGES = 256  # fewer images than this give BatchNorm statistics that are mostly noise
BN_STATS = ("train", "test")
BN_STATS_HELP = (
    "BatchNorm statistics: the run's own (train, the default) or re-estimated on the very images being predicted "
    "(test: transductive; the weights on disk stay as they are)"
)


@torch.no_grad()
def batchnorm_from(
    model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, compute: Compute | None = None
) -> torch.nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on uint8 (N, 32, 32, 3)
    ``images``: reset, then one pass without gradients in batches of ``batch_size``, each batch's mean and
    variance weighing the same (PyTorch's cumulative average, ``momentum=None``). Nothing else changes, and
    ``model`` itself is left as it was (test-time BatchNorm, as in Schneider et al. 2020 and TENT's baseline)."""
    if len(images) < MIN_BN_IMAGES:
        raise UserError(
            f"--bn-stats test needs at least {MIN_BN_IMAGES} images to estimate BatchNorm statistics from, and there "
            f"are {len(images)}; predict more images at once, or leave --bn-stats at train"
        )
    adapted = copy.deepcopy(model).eval()
    norms = [m for m in adapted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for start in range(0, len(images), batch_size):
        with compute.autocast() if compute is not None else nullcontext():
            adapted(normalize(images[start : start + batch_size]))
    return adapted.eval()


def predict(
    model: torch.nn.Module,
    images: np.ndarray,
    tta: TTASpec | None,
    batch_size: int = 256,
    what: str | None = None,
    compute: Compute | None = None,
    bn_stats: str = "train",
) -> np.ndarray:
    """Class predictions (N,) for uint8 (N, 32, 32, 3) images, with ``tta``'s views, outside a training run.

    Runs as ``compute`` says (default: ``Compute.resolve("auto")``, the GPU if there is one and bf16 where it is
    native; callers pass the run's ``train.mixed_precision`` resolved the same way training resolves it). With
    ``bn_stats="test"`` the BatchNorm statistics come from ``images`` themselves (:func:`batchnorm_from`), not from
    training. On a CPU, batches of 256 in channels-last memory halve the time that batches of 1000 in NCHW took:
    those spent a third of their CPU time in the kernel, faulting in fresh activation memory for every batch
    (BENCHMARKS.md, "exporting on a CPU"). With ``what``, a line says what is predicted, and on a terminal a
    progress bar follows it.
    """
    compute = compute or Compute.resolve()
    model = model.to(compute.device, memory_format=torch.channels_last).eval()
    x = torch.from_numpy(np.ascontiguousarray(images)).to(compute.device)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    views = tta.forward_passes if tta else 1
    if bn_stats not in BN_STATS:
        raise UserError(f"--bn-stats {bn_stats!r}: use train (the run's own statistics) or test")
    if bn_stats == "test":
        model = batchnorm_from(model, x, batch_size, compute)
    if what:
        stats = ", BatchNorm statistics from these images" if bn_stats == "test" else ""
        print(
            f"{what}: {len(x):,} images x {views} view{'s' if views > 1 else ''} on {compute.device}, "
            f"{compute.precision.label}{stats}",
            flush=True,
        )
    with Progress(*columns, disable=what is None or not Console().is_terminal, transient=True) as bar:
        task = bar.add_task(what or "", total=len(x))
        logits = predict_logits(model, x, batch_size, tta=tta, on_batch=lambda n: bar.advance(task, n), compute=compute)
    return logits.argmax(-1).cpu().numpy()


def predict_classes(
    model,
    images: torch.Tensor,
    accelerator: Accelerator,
    batch_size: int,
    tta: TTASpec | None = None,
    channels_last: bool = True,
) -> torch.Tensor:
    """Each image's predicted class (N,), in the images' order, on every process: process r predicts images
    r::world, and the gathered columns are put back in place."""
    model.eval()
    rank, world = accelerator.process_index, accelerator.num_processes
    local = predict_logits(model, images[rank::world], batch_size, accelerator, tta, channels_last).argmax(-1)
    rows = -(-len(images) // world)  # processes with fewer images pad with -1, dropped below
    padded = torch.full((rows,), -1, dtype=torch.long, device=local.device)
    padded[: len(local)] = local
    gathered = accelerator.gather(padded).reshape(world, rows)  # row r: images r, r + world, ...
    return gathered.t().reshape(-1)[: len(images)]


def evaluate(
    model,
    images: torch.Tensor,
    labels: torch.Tensor,
    accelerator: Accelerator,
    batch_size: int,
    tta: TTASpec | None = None,
    channels_last: bool = True,
) -> float:
    """Top-1 accuracy on the test set, each image counted once (:func:`predict_classes`)."""
    predicted = predict_classes(model, images, accelerator, batch_size, tta, channels_last)
    return (predicted == labels).double().mean().item()


def to_device_data(images: np.ndarray, labels: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images)).to(device), torch.from_numpy(labels).to(device)
