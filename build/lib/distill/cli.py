"""Command-line plumbing shared by the entry points: one parser shape, recipe plus overrides."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distill.recipe import Recipe, dump_recipe, load_recipe


def training_parser(description: str, default_recipe: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--recipe",
        help=f"recipe name (recipes/NAME.yaml) or path (default {default_recipe}; with --resume, the run's own)",
    )
    parser.set_defaults(default_recipe=default_recipe)
    parser.add_argument("--data-dir", help="holds, or receives, cifar-10-batches-py/ (overrides data.dir)")
    parser.add_argument("--output-dir", help="the run directory (default runs/<recipe name>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its last checkpoint"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved recipe, parameter count and FLOPs per image, then exit",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted recipe overrides, e.g. train.epochs=5"
    )
    return parser


def with_data_dir(overrides: list[str], data_dir: str | Path | None) -> list[str]:
    """The overrides plus ``data.dir=DIR`` for a ``--data-dir DIR`` flag (the one place that turns it into one)."""
    return [*overrides, f"data.dir={data_dir}"] if data_dir else list(overrides)


UNLABELED_HELP = (
    "a transfer set: unlabelled images (a test pickle or an (N, 32, 32, 3) uint8 .npy) distilled on beside the "
    "training images (sets kd.unlabeled; repeatable)"
)


def with_unlabeled(overrides: list[str], files: list[str] | None) -> list[str]:
    """The overrides plus ``kd.unlabeled=[...]`` for ``--unlabeled FILE`` flags (JSON is YAML: any path is safe)."""
    return [*overrides, f"kd.unlabeled={json.dumps([str(f) for f in files])}"] if files else list(overrides)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> tuple[argparse.Namespace, Recipe, Path]:
    args = parser.parse_intermixed_args(argv)
    overrides = with_unlabeled(with_data_dir(args.overrides, args.data_dir), getattr(args, "unlabeled", None))
    source = args.recipe or args.default_recipe
    if args.recipe is None and args.resume and args.output_dir:
        stored = Path(args.output_dir) / "recipe.yaml"  # resume with the recipe the run started with
        source = str(stored) if stored.is_file() else source
    recipe = load_recipe(source, overrides)
    run_dir = Path(args.output_dir) if args.output_dir else Path("runs") / recipe.name
    return args, recipe, run_dir


def dry_run(recipe: Recipe, student: bool) -> None:
    """Print the resolved recipe, the model's trainable parameters and FLOPs per image; touches no data."""
    from distill.models import count_flops, count_trainable, create_model

    model = create_model(recipe.model.name, recipe.model.kwargs, student=student)
    flops = count_flops(model)
    print(dump_recipe(recipe), end="")
    print(f"Trainable parameters: {count_trainable(model)}")
    print(f"GFLOP per image: forward {flops['forward'] / 1e9:.3f}, training step {flops['train_step'] / 1e9:.3f}")
