"""From nothing to a submission in one command: teacher -> cache -> student -> report -> CSV.

    distill-run --student-recipe kd_t4 --test-pkl cifar_test_nolabel.pkl --out submission.csv
    accelerate launch -q -m distill --student-recipe kd_max --test-pkl cifar_test_nolabel.pkl --out submission.csv

Trains the teacher the student recipe names (``kd.teacher``, as ``kd.teacher_seeds`` seeds) into
``RUNS/<teacher recipe>``, caches its logits on the student's views (the teacher's own ``cache/`` when
the views are the teacher's, else ``cache-<student recipe>/``), trains the student into
``RUNS/<student recipe>``, writes the report into ``RUNS/<student recipe>/report`` and the CSV to
``--out``. Every stage is resumable: run the same command again and a finished stage is skipped (it
says so), an interrupted one continues from its checkpoint, and a stale cache is rebuilt. Each
stage's own command (``train_teacher.py``, ``cache_logits.py``, ``train_student.py``, ``report.py``,
``export.py``) still works on the same directories. Trailing ``key=value`` overrides go to both recipes.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from distill.cache_logits import TeacherRun, cache_teachers
from distill.cli import UNLABELED_HELP, with_data_dir, with_unlabeled
from distill.data import load_data, load_test_pickle, load_unlabeled
from distill.devices import make_accelerator
from distill.engine import BN_STATS, BN_STATS_HELP
from distill.errors import UserError, cli_main
from distill.logit_cache import LogitCache
from distill.recipe import Recipe, load_recipe
from distill.runs import check_same_recipe
from distill.train_teacher import train_teachers
from distill.trainer import train


def _say(accelerator, message: str) -> None:
    if accelerator.is_main_process:
        print(f"distill-run: {message}", flush=True)


def _teacher_dirs(recipe: Recipe, run_dir: Path, seeds: int) -> list[Path]:
    return [run_dir] if seeds == 1 else [run_dir / f"seed{recipe.seed + k}" for k in range(seeds)]


def _cache_path(teacher: Recipe, student: Recipe, run_dir: Path) -> Path:
    """The teacher's own cache when the student replays the teacher's views, else one for this student."""
    views = lambda r: (r.augment, r.cache.views, r.cache.seed)  # noqa: E731  (what fixes a cache's content)
    own = views(student) == views(teacher) and not student.kd.unlabeled
    return run_dir / ("cache" if own else f"cache-{student.name}")


def _teacher_stage(student: Recipe, runs: Path, overrides: list[str], accelerator) -> Path:
    """Teachers the student needs, and their cache on its views: each reused when finished (and, for the
    cache, fitting and not stale), resumed when stopped, else made. Returns the cache."""
    teacher = load_recipe(student.kd.teacher, overrides)
    run_dir, seeds = runs / teacher.name, student.kd.teacher_seeds
    members = _teacher_dirs(teacher, run_dir, seeds)
    cache = _cache_path(teacher, student, run_dir)
    # what the cache is built on: the student's views, of the training images and its transfer set
    views = replace(
        teacher, augment=student.augment, cache=student.cache, kd=replace(teacher.kd, unlabeled=student.kd.unlabeled)
    )
    if not all((d / "summary.json").is_file() for d in members):
        resume = any((d / "state").is_dir() or (d / "summary.json").is_file() for d in members)
        _say(accelerator, f"{'resuming' if resume else 'training'} teacher {teacher.name} x{seeds} in {run_dir}")
        train_teachers(teacher, run_dir, accelerator, seeds, resume=resume, cache_recipe=views, cache=cache)
        return cache
    for k, d in enumerate(members):
        check_same_recipe(d, replace(teacher, seed=teacher.seed + k) if seeds > 1 else teacher)
    _say(accelerator, f"teacher {run_dir} is finished; reusing it")
    if (cache / "meta.json").is_file():
        try:
            found = LogitCache.load(cache)
            if len(found.meta["teachers"]) != seeds:
                raise UserError(f"it holds {len(found.meta['teachers'])} teachers, not {seeds}")
            train = load_data(student.data)[0]
            unlabeled = load_unlabeled(student.kd.unlabeled) if student.kd.unlabeled else None
            found.check_matches(train, student.augment, student.cache.views, student.data, unlabeled)
            _say(accelerator, f"cache {cache} fits the student; reusing it")
            return cache
        except UserError as why:
            _say(accelerator, f"cache {cache} cannot be used ({str(why)[:160]}); rebuilding it")
    return cache_teachers([TeacherRun.load(d) for d in members], views, accelerator, cache)


def switches(student: Recipe, bn_stats: str) -> str | None:
    """One line naming each switch in use that trains or predicts on more than the CIFAR-10 training set."""
    used = []
    if student.kd.unlabeled:
        used.append(f"transfer set kd.unlabeled={','.join(student.kd.unlabeled)} (distils on those unlabelled images)")
    if student.data.train_on_test:
        used.append("data.train_on_test=true (trains on the CIFAR-10 test labels; measured on data.val_size held out)")
    if bn_stats == "test":
        used.append("--bn-stats test (BatchNorm statistics from the test pickle's images)")
    return "; ".join(used) + "; check with your course staff that these are allowed" if used else None


def run_pipeline(
    student_recipe: str,
    test_pkl: str | Path,
    out: str | Path,
    runs: str | Path = "runs",
    overrides: list[str] = (),
    unlabeled: list[str] | None = None,
    bn_stats: str = "train",
) -> dict:
    """Teacher, cache, student, report and CSV, each skipped when done; returns the CSV's check.

    ``unlabeled`` files are the student's transfer set (``kd.unlabeled``); ``bn_stats`` goes to the export."""
    from distill import export, report  # the last stages' imports (matplotlib) only when they run

    student = load_recipe(student_recipe, with_unlabeled(list(overrides), unlabeled))
    out, runs = Path(out), Path(runs)
    export.check_out(out)  # every input checked before the first stage starts
    load_test_pickle(test_pkl)
    if student.kd.alpha > 0 and not student.kd.teacher:
        raise UserError(f"recipe '{student.name}' distils but names no kd.teacher; set kd.teacher=RECIPE")
    accelerator = make_accelerator(student)
    if (line := switches(student, bn_stats)) is not None:
        _say(accelerator, f"switches in use: {line}")
    members, cache = [], None
    if student.kd.alpha > 0:
        cache = _teacher_stage(student, runs, list(overrides), accelerator)
        teacher = load_recipe(student.kd.teacher, list(overrides))
        members = _teacher_dirs(teacher, runs / teacher.name, student.kd.teacher_seeds)
    student_dir = runs / student.name
    if (student_dir / "summary.json").is_file():
        check_same_recipe(student_dir, student)
        _say(accelerator, f"student {student_dir} is finished; reusing it")
    else:
        resume = (student_dir / "state").is_dir()
        _say(accelerator, f"{'resuming' if resume else 'training'} student {student.name} in {student_dir}")
        train(student, "student", student_dir, accelerator, resume=resume, teacher_cache=cache)
    check = {}
    if accelerator.is_main_process:
        report_dir = student_dir / "report"
        if (report_dir / "report.md").is_file():
            _say(accelerator, f"report {report_dir} exists; leaving it")
        else:
            report.make_report([*members, student_dir], report_dir, student.data.dir)
        check = export.export(student_dir, test_pkl, out, bn_stats)
    accelerator.wait_for_everyone()
    return check


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Teacher -> cache -> student -> report -> submission CSV.")
    parser.add_argument("--student-recipe", default="kd_t4", help="recipe of the student (names its teacher)")
    parser.add_argument("--test-pkl", required=True, help="the competition's test pickle")
    parser.add_argument("--out", default="submission.csv", help="the CSV to write")
    parser.add_argument("--runs-dir", default="runs", help="where the teacher and student runs go")
    parser.add_argument("--data-dir", help="holds, or receives, cifar-10-batches-py/ (sets data.dir)")
    parser.add_argument("--unlabeled", action="append", metavar="FILE", help=UNLABELED_HELP + "; the student's only")
    parser.add_argument("--bn-stats", choices=BN_STATS, default="train", help=BN_STATS_HELP)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for both recipes")
    args = parser.parse_intermixed_args(argv)
    overrides = with_data_dir(args.overrides, args.data_dir)
    return run_pipeline(
        args.student_recipe, args.test_pkl, args.out, args.runs_dir, overrides, args.unlabeled, args.bn_stats
    )


def cli() -> None:
    cli_main(main)


if __name__ == "__main__":
    cli()
