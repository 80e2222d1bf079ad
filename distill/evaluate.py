"""Score a finished run on the CIFAR-10 test set under each test-time augmentation.

    python distill/evaluate.py --run runs/kd_fast94 [--data-dir DIR]

Rebuilds the run from its ``recipe.yaml`` and ``model.safetensors`` (never a pickle) and prints its
test accuracy with no TTA, flip TTA and flip + 1-pixel-shift TTA, all on the same weights: what a
TTA buys, without training again. The test set is the recipe's (``data.test_limit`` included).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill.augment import TTA_VARIANTS
from distill.data import load_cifar10
from distill.engine import predict
from distill.errors import cli_main
from distill.runs import load_run


def evaluate_run(run_dir: str | Path, data_dir: str | Path | None = None) -> dict[str, float]:
    """Test accuracy of the run's saved weights under each of :data:`~distill.augment.TTA_VARIANTS`."""
    recipe, model = load_run(run_dir)
    _, test = load_cifar10(data_dir or recipe.data.dir, download=False)
    test = test.head(recipe.data.test_limit)
    return {
        name: float((predict(model, test.images, tta, what=f"TTA {name}") == test.labels).mean())
        for name, tta in TTA_VARIANTS.items()
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description="Test accuracy of a finished run under each test-time augmentation.")
    parser.add_argument("--run", required=True, help="a finished run directory (teacher or student)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (default: the recipe's data.dir)")
    args = parser.parse_args(argv)
    accuracy = evaluate_run(args.run, args.data_dir)
    table = Table(title=f"test accuracy of {args.run}")
    table.add_column("TTA")
    table.add_column("test accuracy", justify="right")
    for name, value in accuracy.items():
        table.add_row(name, f"{value:.2%}")
    Console().print(table)
    return accuracy


if __name__ == "__main__":
    cli_main(main)
