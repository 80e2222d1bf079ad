"""Stage 3: train a student ResNet (at most 5M trainable parameters) from the teacher's logit cache.

    accelerate launch distill/train_student.py --recipe kd_t4 --teacher-cache runs/teacher/cache [key=value ...]
    accelerate launch distill/train_student.py --recipe ce      # the no-teacher baseline

Loss: ``alpha * T^2 * KL(p_teacher,T || p_student,T) + (1 - alpha) * CE`` with the teacher's
logits read from the cache only; in epoch e the student sees view set e mod K, pixel for pixel the
images the teacher saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from distill.cli import UNLABELED_HELP, dry_run, parse, training_parser
from distill.errors import cli_main

if TYPE_CHECKING:
    from distill.trainer import Result


def main(argv: list[str] | None = None) -> Result | None:
    parser = training_parser("Train a student from a teacher's logit cache.", default_recipe="kd_t4")
    parser.add_argument(
        "--teacher-cache",
        help="cache directory written by train_teacher.py or cache_logits.py (with --resume: the run's own)",
    )
    parser.add_argument("--unlabeled", action="append", metavar="FILE", help=UNLABELED_HELP)
    args, recipe, run_dir = parse(parser, argv)
    if args.dry_run:
        dry_run(recipe, student=True)
        return None
    from distill.devices import make_accelerator  # training's imports (accelerate, rich), not a dry run's
    from distill.runs import started_with
    from distill.trainer import train

    cache = args.teacher_cache
    if cache is None and args.resume:
        cache = started_with(run_dir, "teacher_cache")  # resume from the cache the run started with
    return train(recipe, "student", run_dir, make_accelerator(recipe), resume=args.resume, teacher_cache=cache)


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
