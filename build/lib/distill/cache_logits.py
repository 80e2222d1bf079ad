"""Stage 2: (re)build a logit cache from one teacher run, or an ensemble of them, alone.

    accelerate launch distill/cache_logits.py --teacher runs/teacher [--out DIR] [cache.views=16]
    accelerate launch distill/cache_logits.py --teacher runs/t1 --teacher runs/t2 --out runs/ensemble_cache
    accelerate launch distill/cache_logits.py --teacher runs/teacher --out runs/transfer_cache --unlabeled cifar_test_nolabel.pkl

Reads each teacher's ``recipe.yaml`` and ``model.safetensors``, runs the frozen teachers over
``cache.views`` augmented view sets of the training images, and writes ``<teacher>/cache/`` (or
``--out``; required for an ensemble, whose cache holds the mean of its teachers' logits). Data,
augmentation and views come from the first teacher's recipe plus the overrides. ``--unlabeled FILE``
(``kd.unlabeled``) adds a transfer set: the teachers' logits of those unlabelled images on views of their
own, for a student that distils on them too. See :mod:`distill.logit_cache` for the format.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from distill.cli import UNLABELED_HELP, with_data_dir, with_unlabeled
from distill.data import Split, load_data, load_transfer_set
from distill.devices import make_accelerator
from distill.errors import UserError, cli_main
from distill.files import check_distinct, check_writable, sha256_file, write_json
from distill.logit_cache import build_cache
from distill.recipe import Recipe, recipe_from_dict
from distill.runs import WEIGHTS, load_run, started_with


@dataclass
class TeacherRun:
    """A trained teacher: its model, run dir, recipe and final test accuracy (None if unknown)."""

    model: torch.nn.Module
    run_dir: Path
    recipe: Recipe
    test_accuracy: float | None = None

    @classmethod
    def load(cls, run_dir: str | Path) -> TeacherRun:
        recipe, model = load_run(run_dir)
        summary = Path(run_dir) / "summary.json"
        accuracy = json.loads(summary.read_text()).get("test_accuracy") if summary.is_file() else None
        return cls(model, Path(run_dir), recipe, accuracy)

    def info(self) -> dict:
        return {
            "model": self.recipe.model.name,
            "weights_sha256": sha256_file(self.run_dir / WEIGHTS),
            "run_dir": str(self.run_dir.resolve()),
            "test_accuracy": self.test_accuracy,
        }


def check_trained_on(teacher: TeacherRun, train: Split, recipe: Recipe) -> None:
    """The teacher must not have trained on images its student is measured on: the test split (unless the
    student trains on it too, ``data.train_on_test``) or, with a held-out split, any image outside the cache's
    training images (a teacher on another split trained on some of the student's validation images)."""
    theirs, ours = teacher.recipe.data, recipe.data

    def split(d) -> str:
        return f"data.val_size={d.val_size} data.val_seed={d.val_seed}" + (
            " data.train_on_test=true" if d.train_on_test else ""
        )

    leak = theirs.train_on_test and not ours.train_on_test
    if ours.val_size and not leak:
        trained = (started_with(teacher.run_dir, "data") or {}).get("train_fingerprint")
        leak = (
            trained != train.fingerprint()
            if trained
            else split(theirs) != split(ours) or theirs.train_limit != ours.train_limit
        )
    if leak:
        raise UserError(
            f"teacher {teacher.run_dir} trained on other images ({split(theirs)}) than this cache is for "
            f"({split(ours)}): its student would be measured on images the teacher trained on; cache it with the "
            f"data settings it trained with, or train a teacher with these"
        )


def ensemble_accuracy(teachers: list[TeacherRun], recipe: Recipe, accelerator: Accelerator) -> float:
    """The test accuracy of the teachers' mean logits (the ensemble a cache holds), with the recipe's TTA."""
    from distill.engine import predict_logits

    test = load_data(recipe.data)[2]
    images = torch.from_numpy(test.images).to(accelerator.device)
    total = None
    for teacher in teachers:
        model = teacher.model.to(accelerator.device).eval()
        logits = predict_logits(
            model, images, recipe.cache.batch_size, accelerator, recipe.tta, recipe.train.channels_last
        )
        total = logits if total is None else total + logits
    return float((total.argmax(-1).cpu().numpy() == test.labels).mean())


def report_ensemble(teachers: list[TeacherRun], recipe: Recipe, accelerator: Accelerator, run_dir: Path) -> float:
    """Score the ensemble, write ``run_dir/ensemble.json`` and print its accuracy as the last line."""
    accuracy = ensemble_accuracy(teachers, recipe, accelerator)
    if accelerator.is_main_process:
        members = {t.run_dir.name: t.test_accuracy for t in teachers}
        write_json(
            run_dir / "ensemble.json", {"members": members, "test_accuracy": accuracy, "tta": recipe.tta.to_dict()}
        )
        each = ", ".join(f"{name} {100 * acc:.2f}%" for name, acc in members.items() if acc is not None)
        print(f"Ensemble of {len(teachers)} teachers (mean logits): test accuracy {100 * accuracy:.2f}% ({each})",
              flush=True)  # fmt: skip
    return accuracy


def cache_teachers(
    teachers: list[TeacherRun], recipe: Recipe, accelerator: Accelerator, out_dir: Path | None = None
) -> Path:
    """Write the cache of ``teachers`` (one, or an ensemble averaged) for ``recipe``'s data and views."""
    if out_dir is None and len(teachers) > 1:
        raise UserError("an ensemble's cache needs --out DIR (it belongs to no single teacher run)")
    out_dir = Path(out_dir) if out_dir else teachers[0].run_dir / "cache"
    inputs = [t.run_dir for t in teachers] + [Path(recipe.data.dir)] + [Path(f) for f in recipe.kd.unlabeled]
    check_distinct(out_dir, inputs, "--out")
    check_writable(out_dir.parent, flag="--out")
    train_split = load_data(recipe.data)[0]  # the trainer's split, so the fingerprint is the same
    for teacher in teachers:
        check_trained_on(teacher, train_split, recipe)
    unlabeled = load_transfer_set(recipe.kd.unlabeled, train_split, accelerator.is_main_process)
    start = time.perf_counter()
    build_cache(
        [teacher.model for teacher in teachers],
        train_split,
        recipe.augment,
        recipe.cache.views,
        recipe.cache.seed,
        recipe.cache.batch_size,
        accelerator,
        out_dir,
        [teacher.info() for teacher in teachers],
        held_out={"val_size": recipe.data.val_size, "val_seed": recipe.data.val_seed},
        unlabeled=unlabeled,
        unlabeled_files=recipe.kd.unlabeled,
    )
    if accelerator.is_main_process:
        who = f"{len(teachers)} teachers (mean logits)" if len(teachers) > 1 else "teacher"
        size = sum(f.stat().st_size for f in out_dir.iterdir()) / 2**20
        transfer = f" + {len(unlabeled):,} unlabelled" if unlabeled is not None else ""
        print(
            f"cache: {who}, {recipe.cache.views} view sets x {len(train_split):,} images{transfer} -> {out_dir} "
            f"({size:,.1f} MiB, {time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    return out_dir


def cache_runs(run_dirs: list[Path], out_dir: Path | None = None, overrides: list[str] | None = None) -> Path:
    """(Re)build the cache of finished teacher runs from their recipes and weights alone."""
    teachers = [TeacherRun.load(d) for d in run_dirs]
    recipe = recipe_from_dict(teachers[0].recipe.to_dict(), overrides)
    return cache_teachers(teachers, recipe, make_accelerator(recipe), out_dir)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Build a logit cache from trained teacher runs.")
    parser.add_argument(
        "--teacher", required=True, action="append", help="a teacher's run directory; repeat it for an ensemble"
    )
    parser.add_argument("--out", help="cache directory (default TEACHER/cache; required for an ensemble)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (overrides data.dir)")
    parser.add_argument("--unlabeled", action="append", metavar="FILE", help=UNLABELED_HELP)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. cache.views=16 data.train_limit=2000")
    args = parser.parse_intermixed_args(argv)
    overrides = with_unlabeled(with_data_dir(args.overrides, args.data_dir), args.unlabeled)
    return cache_runs([Path(run) for run in args.teacher], args.out, overrides)


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
