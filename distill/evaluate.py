"""Score a finished run: on the CIFAR-10 test set under each test-time augmentation, or under shift.

    python distill/evaluate.py --run runs/kd_fast94 [--data-dir DIR]
    python distill/evaluate.py --run runs/kd_fast94 --suite shift [--natural cifar10.1_v6_data.npy] [--natural cifar102_test.npz]

Rebuilds the run from its ``recipe.yaml`` and ``model.safetensors`` (never a pickle). The default
suite prints the test accuracy with no TTA, flip TTA and flip + 1-pixel-shift TTA, all on the same
weights: what a TTA buys, without training again. ``--suite shift`` scores the clean test set, its 12
corruptions x 5 severities (:mod:`distill.corruptions`) and the natural-shift files given, prints the
table and writes ``shift.json`` and ``shift.png`` into ``--out`` (default ``RUN/shift``). The test set is
the recipe's (``data.test_limit`` included; ``--images N`` keeps the first N).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill.augment import TTA_VARIANTS
from distill.compute import Compute
from distill.data import load_cifar10
from distill.engine import BN_STATS, BN_STATS_HELP, MIN_BN_IMAGES, predict
from distill.errors import UserError, cli_main
from distill.files import check_writable, write_json
from distill.runs import load_run
from distill.shift import load_natural, plot_shift, score_shift, shift_table


def check_not_trained_on_test(run_dir: str | Path, recipe) -> None:
    """A run that trained on the test split has no test accuracy to show: refuse rather than print an inflated one."""
    if recipe.data.train_on_test:
        raise UserError(
            f"run {run_dir} trained on the CIFAR-10 test split (data.train_on_test=true), so any test-set accuracy of "
            f"it is inflated; its measurement is the held-out split's (val_accuracy in {Path(run_dir) / 'summary.json'})"
        )


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None, bn_stats: str = "train") -> dict[str, float]:
    """Test accuracy of the run's saved weights under each of :data:`~distill.augment.TTA_VARIANTS`
    (with ``bn_stats="test"``, BatchNorm statistics re-estimated on the test images)."""
    recipe, model = load_run(run_dir)
    check_not_trained_on_test(run_dir, recipe)
    _, test = load_cifar10(data_dir or recipe.data.dir, download=False)
    test = test.head(recipe.data.test_limit)

    def accuracy(name: str, tta) -> float:
        pred = predict(
            model,
            test.images,
            tta,
            what=f"TTA {name}",
            compute=Compute.resolve(recipe.train.mixed_precision),
            bn_stats=bn_stats,
        )
        return float((pred == test.labels).mean())

    return {name: accuracy(name, tta) for name, tta in TTA_VARIANTS.items()}


def evaluate_shift(
    run_dir: str | Path,
    data_dir: str | Path | None = None,
    natural: list[str] | None = None,
    tta: str = "none",
    images: int | None = None,
    out: str | Path | None = None,
    bn_stats: str = "train",
) -> dict:
    """The shift suite of :mod:`distill.shift` for a finished run; writes ``shift.json`` and ``shift.png``."""
    if tta not in TTA_VARIANTS:
        raise UserError(f"--tta {tta!r} is not one of {', '.join(TTA_VARIANTS)}")
    if images is not None and images < 1:
        raise UserError(f"--images {images}: give a count of 1 or more")
    out = Path(out) if out else Path(run_dir) / "shift"
    recipe, model = load_run(run_dir)
    check_not_trained_on_test(run_dir, recipe)
    sets = load_natural(natural or [])  # every input checked before anything is written
    _, test = load_cifar10(data_dir or recipe.data.dir, download=False)
    test = test.head(recipe.data.test_limit).head(images)
    check_writable(out, flag="--out")
    if bn_stats == "test":  # every set's size checked before the first of 60 corrupted sets is scored
        small = [
            (name, len(split)) for name, split in {"the test set": test, **sets}.items() if len(split) < MIN_BN_IMAGES
        ]
        if small:  # each set's own fix: --images sizes the test set only; a natural set is taken whole
            fixes = ["raise --images" if name == "the test set" else f"leave --natural {name} out" for name, _ in small]
            raise UserError(
                f"--bn-stats test needs at least {MIN_BN_IMAGES} images per set; "
                + ", ".join(f"{name} has {n}" for name, n in small)
                + f" ({', or '.join(fixes)}, or leave --bn-stats at train)"
            )
    result = score_shift(
        model, test, TTA_VARIANTS[tta], sets, compute=Compute.resolve(recipe.train.mixed_precision), bn_stats=bn_stats
    )
    result["run"] = str(run_dir)
    title = f"{Path(run_dir).name} ({recipe.model.name}) under shift, TTA {tta}"
    title += ", BatchNorm statistics of each set" if bn_stats == "test" else ""
    Console().print(shift_table(result, title))
    write_json(out / "shift.json", result)
    plot_shift(result, out / "shift.png", title)
    print(f"wrote {out / 'shift.json'} and {out / 'shift.png'}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Score a finished run under each test-time augmentation or shift.")
    parser.add_argument("--run", required=True, help="a finished run directory (teacher or student)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (default: the recipe's data.dir)")
    parser.add_argument("--suite", choices=("tta", "shift"), default="tta", help="what to score (default tta)")
    parser.add_argument(
        "--natural", action="append", help="shift suite: a CIFAR-10.1 *_data.npy or CIFAR-10.2 .npz (repeatable)"
    )
    parser.add_argument("--tta", default="none", help=f"shift suite: one of {', '.join(TTA_VARIANTS)} (default none)")
    parser.add_argument("--images", type=int, help="shift suite: score the first N test images only")
    parser.add_argument("--out", help="shift suite: where shift.json and shift.png go (default RUN/shift)")
    parser.add_argument(
        "--bn-stats", choices=BN_STATS, default="train", help=BN_STATS_HELP + "; per set in the shift suite"
    )
    args = parser.parse_args(argv)
    if args.suite == "shift":
        return evaluate_shift(args.run, args.data_dir, args.natural, args.tta, args.images, args.out, args.bn_stats)
    accuracy = evaluate_run(args.run, args.data_dir, args.bn_stats)
    table = Table(title=f"test accuracy of {args.run}")
    table.add_column("TTA")
    table.add_column("test accuracy", justify="right")
    for name, value in accuracy.items():
        table.add_row(name, f"{value:.2%}")
    Console().print(table)
    return accuracy


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
