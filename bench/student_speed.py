"""Seconds per epoch of several student recipes, measured side by side (issue 24's "at most 1.3x" check).

    python -m bench.student_speed --data-dir DIR --config today=kd_fast94: \
        --config "air=kd_fast94:model.kwargs.act=gelu train.batch_size=1024" [--teacher t96=teacher_96:] \
        [--images 10000] [--rounds 3]

Each ``--config NAME=RECIPE:OVERRIDES`` (space-separated ``key=value``) is set up once as training sets it up
(labels only: ``kd.alpha=0``), on the first ``--images`` training images. Then the configs' epochs run
interleaved, round after round (A B C, A B C, ...), so that whatever else the machine does falls on all of them
alike; the first round warms each up (oneDNN's primitives, the allocator) and is not counted. Reported: each
config's median seconds per epoch of its training loop (:func:`distill.engine.train_one_epoch`, evaluation
aside), scaled to 50,000 images, and its ratio to the first config's. Round r trains as epoch r of the recipe would,
at its resolution under ``train.progressive_min_size`` and on its share of the images under ``train.select_fraction``
(the table names both; seconds are those of the epoch as it trains, scaled to 50,000 images in the pool): a
progressive run's later, full-size epochs cost what the plain recipe's do.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from distill import engine, trainer
from distill.devices import make_accelerator
from distill.errors import UserError, cli_main
from distill.files import write_json
from distill.recipe import load_recipe

FULL = 50_000  # CIFAR-10's training images: what an epoch of a real run is


def parse_config(text: str, data_dir: str, images: int) -> tuple[str, list[str], str]:
    name, sep, rest = text.partition("=")
    recipe, _, overrides = rest.partition(":")
    if not sep or not name or not recipe:
        raise UserError(f"--config {text!r}: give NAME=RECIPE:'key=value key=value' (overrides optional)")
    extra = overrides.split()  # key=value pairs, space-separated (a value may hold commas: blocks=[1,1,2])
    return (
        name,
        [*extra, "kd.alpha=0", f"data.dir={data_dir}", "data.download=false", f"data.train_limit={images}"],
        recipe,
    )


def measure(configs: list[str], data_dir: str, images: int = 10_000, rounds: int = 3,
            teachers: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Time ``configs`` (set up as students) and ``teachers`` (as teachers: no 5M cap) side by side."""
    if rounds < 2:
        raise UserError(f"--rounds {rounds}: give 2 or more (the first only warms up)")
    parsed = [(*parse_config(text, data_dir, images), role)
              for role, texts in (("student", configs), ("teacher", teachers)) for text in texts]  # fmt: skip
    runs, seconds = {}, {name: [] for name, *_ in parsed}
    sizes, shares = {name: set() for name, *_ in parsed}, {name: set() for name, *_ in parsed}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides, recipe_name, role in parsed:
            recipe = load_recipe(recipe_name, overrides)
            accelerator = make_accelerator(recipe)
            runs[name] = trainer._setup(recipe, role, Path(tmp) / name, accelerator, False, None)
        try:
            progress = engine.make_progress(next(iter(runs.values())).accelerator)
            with progress:
                for r in range(rounds):
                    for name, run in runs.items():
                        size, stats = trainer.train_epoch(run, r, progress)
                        if r:  # what the epoch would take on 50,000 images (a selecting one trains on a share)
                            seconds[name].append(stats["seconds"] * FULL / len(run.labels))
                            sizes[name].add(size)
                            shares[name].add(round(stats["images"] / len(run.labels), 2))
                        print(f"round {r + 1}/{rounds} {name}: {stats['img_per_s']:,.0f} img/s", flush=True)
        finally:
            for run in runs.values():
                run.lock.release()
    first = next(iter(seconds))
    base = statistics.median(seconds[first])
    return {
        "images": images,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "configs": {
            name: {"recipe": recipe, "overrides": overrides[:-4], "role": role}
            for name, overrides, recipe, role in parsed
        },
        "seconds_per_epoch": {name: statistics.median(s) for name, s in seconds.items()},
        "all_seconds": seconds,
        "ratio": {name: statistics.median(s) / base for name, s in seconds.items()},
        "resolutions": {name: sorted(s) for name, s in sizes.items()},  # what each config trained at, rounds 1..R
        "shares": {name: sorted(s) for name, s in shares.items()},  # the share of the images each epoch trained on
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--config", action="append", required=True, help="NAME=RECIPE:'key=value key=value'")
    parser.add_argument(
        "--teacher",
        action="append",
        default=[],
        help="NAME=RECIPE:'key=value ...', set up as a teacher (no 5M cap), timed after the configs",
    )
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    result = measure(args.config, args.data_dir, args.images, args.rounds, tuple(args.teacher))
    table = Table(title=f"seconds per epoch of 50,000 images, {result['threads']} threads, median of "
                        f"{args.rounds - 1} interleaved rounds on {args.images:,} images")  # fmt: skip
    for column in ("config", "s / epoch", "ratio", "pixels", "images"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for name, s in result["seconds_per_epoch"].items():
        pixels = ", ".join(map(str, result["resolutions"][name]))
        images = ", ".join(f"{share:.0%}" for share in result["shares"][name])
        table.add_row(name, f"{s:.1f}", f"{result['ratio'][name]:.2f}x", pixels, images)
    Console().print(table)
    if args.json:
        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    cli_main(main)
