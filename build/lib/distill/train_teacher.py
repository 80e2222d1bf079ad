"""Stage 1: train the teacher from scratch, then write its logit cache into ``<run>/cache/``.

    accelerate launch distill/train_teacher.py --recipe teacher_96 [--data-dir DIR] [--output-dir DIR] [key=value ...]
    accelerate launch distill/train_teacher.py --recipe teacher_97 --seeds 3   # an ensemble: 3 seeds, mean logits

No pretrained weights and no extra data: the teacher sees the CIFAR-10 training set only. With
``--seeds N`` it trains N teachers (seeds ``seed .. seed+N-1``) into ``<run>/seed<k>/`` and caches
the mean of their logits in ``<run>/cache/``; ``--resume`` skips the finished ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from distill.cli import dry_run, parse, training_parser
from distill.errors import UserError, cli_main, words
from distill.recipe import Recipe

if TYPE_CHECKING:
    from accelerate import Accelerator

    from distill.cache_logits import TeacherRun
    from distill.trainer import Result


def train_teachers(
    recipe: Recipe,
    run_dir: Path,
    accelerator: Accelerator,
    seeds: int = 1,
    resume: bool = False,
    cache_recipe: Recipe | None = None,
    cache: Path | None = None,
    again: str = "rerun with --resume",
) -> tuple[list[Result | None], list[TeacherRun], Path]:
    """Train ``seeds`` teachers (one in ``run_dir`` itself, or ``run_dir/seed<k>``) and cache their mean logits.

    The cache (``cache``, default ``run_dir/cache``) holds the views of ``cache_recipe`` (default the
    teacher's own recipe: a student may ask for other views). With ``resume``, a teacher that finished
    training is loaded from its run instead of trained again (None in the results), and an existing
    complete cache ends the job. ``again`` is what a stopped run tells the user to do to continue. Returns the
    results, the teachers and the cache's path.
    """
    from distill.cache_logits import TeacherRun, cache_teachers, report_ensemble  # training's, not a dry run's
    from distill.runs import check_same_recipe
    from distill.trainer import train

    cache = cache or run_dir / "cache"
    members = [(replace(recipe, seed=recipe.seed + k), run_dir / f"seed{recipe.seed + k}") for k in range(seeds)]
    if seeds == 1:
        members = [(recipe, run_dir)]
    check_layout(run_dir, [d for _, d in members])
    if resume and _complete([d for _, d in members], cache):
        raise UserError(f"teacher run {run_dir} and its cache are complete; nothing to resume")
    if resume and seeds > 1 and not any((d / "state").is_dir() or (d / "summary.json").is_file() for _, d in members):
        raise UserError(f"nothing to resume in {run_dir} (no teacher run in it); run without --resume")
    results, teachers = [], []
    for member, member_dir in members:
        if resume and (member_dir / "summary.json").is_file():
            # training finished before the job was stopped: load it and go on
            check_same_recipe(member_dir, member)
            print(f"teacher run {member_dir} finished training; reusing it", flush=True)
            results.append(None)
            teachers.append(TeacherRun.load(member_dir))
            continue
        resume_member = resume and (seeds == 1 or (member_dir / "state").is_dir())
        result = train(member, "teacher", member_dir, accelerator, resume=resume_member, again=again)
        results.append(result)
        teachers.append(TeacherRun(result.model, member_dir, member, result.test_accuracy))
    cache_teachers(teachers, cache_recipe or recipe, accelerator, cache)
    if seeds > 1:  # the ensemble's own accuracy, last: it is what the student distils from
        report_ensemble(teachers, recipe, accelerator, run_dir)
    return results, teachers, cache


def check_layout(run_dir: Path, members: list[Path]) -> None:
    """A teacher dir holds one teacher (``run_dir`` itself) or one ensemble (``run_dir/seed<k>``): refuse to
    mix them, or to grow an ensemble with other seeds, which would replace a cache a student was trained on."""
    single = (run_dir / "summary.json").is_file() or (run_dir / "state").is_dir()
    seeds = sorted(p.name for p in run_dir.glob("seed*") if (p / "recipe.yaml").is_file())
    if members == [run_dir] and seeds:
        raise UserError(
            f"{run_dir} holds an ensemble of {len(seeds)} teachers ({', '.join(seeds)}); train a single teacher into "
            f"another {words().run_dir}, or pass --seeds {len(seeds)} to continue the ensemble"
        )
    if members != [run_dir] and single:
        raise UserError(
            f"{run_dir} holds a single teacher; train the ensemble of {len(members)} into another {words().run_dir}"
        )
    if seeds and not set(seeds) <= {d.name for d in members}:
        raise UserError(
            f"{run_dir} holds an ensemble of {', '.join(seeds)}, not of {', '.join(d.name for d in members)}; train "
            f"this ensemble into another {words().run_dir}"
        )


def _complete(members: list[Path], cache: Path) -> bool:
    """Every member finished and the cache holds exactly their logits (by their weights' sha256)."""
    from distill.files import sha256_file
    from distill.logit_cache import LogitCache
    from distill.runs import WEIGHTS

    if not all((d / "summary.json").is_file() for d in members) or not (cache / "meta.json").is_file():
        return False
    try:
        return LogitCache.load(cache).teacher_weights == [sha256_file(d / WEIGHTS) for d in members]
    except UserError:
        return False


def main(argv: list[str] | None = None) -> list[Result | None] | None:
    parser = training_parser("Train a teacher from scratch and cache its logits.", default_recipe="teacher_96")
    parser.add_argument(
        "--seeds", type=int, default=1, help="train N teachers (seeds seed..seed+N-1) and cache their mean logits"
    )
    args, recipe, run_dir = parse(parser, argv)
    if args.seeds < 1:
        raise UserError(f"--seeds {args.seeds}: give a count of 1 or more")
    if args.dry_run:
        dry_run(recipe, student=False)
        return None
    from distill.devices import make_accelerator

    return train_teachers(recipe, run_dir, make_accelerator(recipe), args.seeds, args.resume)[0]


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
