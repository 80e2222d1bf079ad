"""Stage 2: (re)build a teacher's logit cache from its run directory alone.

    accelerate launch distill/cache_logits.py --teacher runs/teacher [--out DIR] [cache.views=16]

Reads the teacher's ``recipe.yaml`` and ``model.safetensors``, runs the frozen teacher over
``cache.views`` augmented view sets of the training images, and writes ``<teacher>/cache/`` (or
``--out``). See :mod:`distill.logit_cache` for the format.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from accelerate import Accelerator

from distill.errors import cli_main
from distill.logit_cache import build_cache, sha256_file
from distill.recipe import Recipe, recipe_from_dict
from distill.runs import WEIGHTS, check_writable, load_run


def cache_teacher(
    teacher,
    recipe: Recipe,
    run_dir: Path,
    accelerator: Accelerator,
    out_dir: Path | None = None,
    teacher_accuracy: float | None = None,
) -> Path:
    """Write the cache of ``teacher`` (the weights saved in ``run_dir``) for ``recipe``'s data and views."""
    from distill.trainer import load_data  # the trainer's data loading, so the fingerprint is the same

    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "cache"
    check_writable(out_dir.parent)
    train_split, _ = load_data(recipe)
    info = {
        "model": recipe.model.name,
        "weights_sha256": sha256_file(Path(run_dir) / WEIGHTS),
        "run_dir": str(Path(run_dir).resolve()),
        "test_accuracy": teacher_accuracy,
    }
    start = time.perf_counter()
    build_cache(
        teacher,
        train_split,
        recipe.augment.spec(),
        recipe.cache.views,
        recipe.cache.seed,
        recipe.cache.batch_size,
        accelerator,
        out_dir,
        info,
    )
    if accelerator.is_main_process:
        print(
            f"cache: {recipe.cache.views} view sets x {len(train_split):,} images -> {out_dir} "
            f"({time.perf_counter() - start:.1f}s)",
            flush=True,
        )
    return out_dir


def cache_run(run_dir: Path, out_dir: Path | None = None, overrides: list[str] | None = None) -> Path:
    """(Re)build the cache of the finished teacher run in ``run_dir`` from its recipe and weights alone."""
    recipe, teacher = load_run(run_dir)
    recipe = recipe_from_dict(recipe.to_dict(), overrides)
    summary = Path(run_dir) / "summary.json"
    accuracy = json.loads(summary.read_text()).get("test_accuracy") if summary.is_file() else None
    from distill.trainer import make_accelerator

    return cache_teacher(teacher, recipe, run_dir, make_accelerator(recipe), out_dir, accuracy)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Build a logit cache from a trained teacher run.")
    parser.add_argument("--teacher", required=True, help="the teacher's run directory")
    parser.add_argument("--out", help="cache directory (default TEACHER/cache)")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (overrides data.dir)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. cache.views=16 data.train_limit=2000")
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides) + ([f"data.dir={args.data_dir}"] if args.data_dir else [])
    return cache_run(Path(args.teacher), args.out, overrides)


if __name__ == "__main__":
    cli_main(main)
