"""Stage 1: train the teacher from scratch, then write its logit cache into ``<run>/cache/``.

    accelerate launch distill/train_teacher.py --recipe teacher [--data-dir DIR] [--output-dir DIR] [key=value ...]

No pretrained weights and no extra data: the teacher sees the CIFAR-10 training set only.
"""

from __future__ import annotations

from distill.cache_logits import TeacherRun, cache_runs, cache_teachers
from distill.cli import dry_run, parse, training_parser
from distill.errors import UserError, cli_main
from distill.runs import check_same_recipe
from distill.trainer import Result, train


def main(argv: list[str] | None = None) -> Result | None:
    parser = training_parser("Train a teacher from scratch and cache its logits.", default_recipe="teacher")
    args, recipe, run_dir = parse(parser, argv)
    if args.dry_run:
        dry_run(recipe)
        return None
    if args.resume and (run_dir / "summary.json").is_file():
        # Training finished before the job was stopped; what is left is the cache.
        check_same_recipe(run_dir, recipe)
        if (run_dir / "cache" / "meta.json").is_file():
            raise UserError(f"teacher run {run_dir} and its cache are complete; nothing to resume")
        print(f"teacher run {run_dir} finished training; building its cache", flush=True)
        cache_runs([run_dir], overrides=[f"data.dir={recipe.data.dir}", f"data.download={recipe.data.download}"])
        return None
    result = train(recipe, "teacher", run_dir, resume=args.resume)
    cache_teachers([TeacherRun(result.model, run_dir, recipe, result.test_accuracy)], recipe, result.accelerator)
    return result


if __name__ == "__main__":
    cli_main(main)
