"""From nothing to a submission in one command: teacher -> cache -> student -> report -> CSV.

    distill-run --student-recipe kd_t4 --test-pkl cifar_test_nolabel.pkl --out submission.csv
    distill-run --student-recipe kd_t4 --test-pkl cifar_test_nolabel.pkl --dry-run    # what it would do, and why
    accelerate launch -q -m distill --student-recipe kd_max --test-pkl cifar_test_nolabel.pkl --out submission.csv

Trains the teacher the student recipe names (``kd.teacher``) into ``RUNS/<teacher recipe>`` (an ensemble of
``kd.teacher_seeds`` N > 1 into ``RUNS/<teacher recipe>-x<N>``), caches its logits on the student's views
(the teacher's own ``cache/`` when the views are the teacher's, else ``cache-<student recipe>-<key>/``,
keyed by the views and the transfer set), trains the student into ``RUNS/<student recipe>``, writes the
report into ``RUNS/<student recipe>/report`` and the CSV to ``--out``.

Every stage is judged by what it contains, not by its path: run the same command again and a finished
stage whose inputs are unchanged is skipped (it says so), an interrupted one continues from its
checkpoint, a cache whose teachers' weights, data, split or views changed is rebuilt (it says why), and a
finished student trained on another cache than the one it would get now is refused with what to do
(its results are never silently reused nor overwritten). Every input is checked before the first stage
starts. Each stage's own command (``train_teacher.py``, ``cache_logits.py``, ``train_student.py``,
``report.py``, ``export.py``) works on the same directories. Trailing ``key=value`` overrides go to both
recipes, but for ``kd.*`` (only the student distils: ``kd.temperature=2`` leaves a finished teacher as it is);
``--unlabeled`` to the student's only.

``--rounds N`` adds self-training (Noisy Student's loop, without labels beyond CIFAR-10's): round k + 1's
student, a fresh initialisation (seed + k), distils from round k's student (``--round-teachers ensemble``: with
round 1's teacher, mean logits) on the same views and transfer set, from a cache in the teaching run
(``cache-round<k+1>``), into ``RUNS/<student recipe>-round<k+1>``. Each round is a stage like the others
(content-keyed, skipped once done, resumed when stopped), and writes ``round.json`` into its student's run:
who taught it and how many of their predictions on the transfer set (the training images without one) it
changed. A round that changed fewer than ``--min-change`` of them ends the rounds, and says so. The report
holds every round's student; the CSV is the last round's.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import timm
import torch

from distill.cache_logits import TeacherRun, cache_teachers
from distill.cli import UNLABELED_HELP, with_data_dir, with_unlabeled
from distill.compute import Compute
from distill.data import BATCH_DIR, Split, load_data, load_test_pickle, load_unlabeled
from distill.devices import make_accelerator
from distill.engine import BN_STATS, BN_STATS_HELP, MIN_BN_IMAGES, image_epochs, predict_logits, probe_rate
from distill.errors import DISTILL_RUN, UserError, cli_main, speaking
from distill.files import check_distinct, check_writable, sha256_file, write_json
from distill.logit_cache import CacheSpec, LogitCache, Mismatch
from distill.recipe import Recipe, load_recipe
from distill.runs import ROUND, WEIGHTS, check_same_recipe, check_weights, load_run, started_with
from distill.train_teacher import train_teachers
from distill.trainer import train

AGAIN = DISTILL_RUN.resume  # what resumes a stopped stage here (no --resume flag)
# the contest command: the best combination measured (BENCHMARKS.md, "the 95% rung"); README shows it too
CONTEST = (
    "distill-run --student-recipe kd_fast95 --test-pkl cifar_test_nolabel.pkl --unlabeled cifar_test_nolabel.pkl "
    "--bn-stats test --out submission.csv"
)
FASTER = "kd_fast94_muon"  # the recipe a long job names: the fewest CPU seconds measured (BENCHMARKS.md, issue 31)
LONG = 3600  # a job estimated longer than this (seconds) here says so, and names FASTER
OTHER_RUNS = "run with the overrides it was made with, or give another --runs-dir"


def _say(accelerator, message: str) -> None:
    if accelerator is None or accelerator.is_main_process:
        print(f"distill-run: {message}", flush=True)


@dataclass
class Stage:
    """One stage of the job as the current state of the disk decides it."""

    name: str  # teacher, cache, student, report, csv
    path: Path
    action: str  # train, resume, reuse, build, rebuild, write, leave
    why: str
    round: int = 1  # the round of self-training whose cache or student this is (--rounds)

    def line(self) -> str:
        where = f"round {self.round} " if self.round > 1 else ""
        return f"{where}{self.name}: {self.action} {self.path} ({self.why})"


@dataclass
class Job:
    """The resolved recipes and paths of one distill-run."""

    student: Recipe
    teacher: Recipe | None
    members: list[Path]  # the teacher run dirs (one, or the ensemble's seed<k>)
    teacher_dir: Path | None
    cache: Path | None
    student_dir: Path
    cache_recipe: Recipe | None  # the teacher's recipe with the student's views and transfer set


def _teacher_dir(runs: Path, teacher: Recipe, seeds: int) -> Path:
    """``RUNS/<teacher>`` for one teacher, ``RUNS/<teacher>-x<N>`` for an ensemble of N: never the same dir."""
    return runs / (teacher.name if seeds == 1 else f"{teacher.name}-x{seeds}")


def _members(teacher: Recipe, run_dir: Path, seeds: int) -> list[Path]:
    return [run_dir] if seeds == 1 else [run_dir / f"seed{teacher.seed + k}" for k in range(seeds)]


def expected_spec(student: Recipe, teachers: list[str] | None, data: bool = True) -> CacheSpec:
    """The cache the student's recipe asks for, of ``teachers`` (weights sha256; None: any): its one identity. With
    ``data=False`` the training data is not asked for (the directory's name is decided before any data is read)."""
    cfg = student.data
    unlabeled = load_unlabeled(student.kd.unlabeled) if student.kd.unlabeled else None
    train = load_data(cfg)[0] if data else Split(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))
    spec = CacheSpec.of(teachers, train, (cfg.val_size, cfg.val_seed), student.augment, student.cache.views,
                        student.cache.seed, unlabeled)  # fmt: skip
    return spec if data else replace(spec, data=None, images=None)


def _cache_path(teacher: Recipe, student: Recipe, run_dir: Path) -> Path:
    """The teacher's own cache when the student replays the teacher's views, else one keyed by the student's."""
    views = lambda r: (r.augment, r.cache.views, r.cache.seed)  # noqa: E731  (what fixes a cache's content)
    if views(student) == views(teacher) and not student.kd.unlabeled:
        return run_dir / "cache"
    return run_dir / f"cache-{student.name}-{expected_spec(student, None, data=False).key[:8]}"  # teachers, data aside


def teacher_overrides(overrides: list[str]) -> list[str]:
    """The overrides a teacher reads: all but ``kd.*``, which only the student's loss and cache stage read."""
    return [o for o in overrides if not o.strip().startswith("kd.")]


def resolve(student: Recipe, runs: Path, overrides: list[str]) -> Job:
    """The recipes and directories of the job, before anything runs."""
    student_dir = runs / student.name
    if student.kd.alpha == 0:
        return Job(student, None, [], None, None, student_dir, None)
    teacher = load_recipe(student.kd.teacher, teacher_overrides(overrides))
    seeds = student.kd.teacher_seeds
    run_dir = _teacher_dir(runs, teacher, seeds)
    cache_recipe = replace(
        teacher, augment=student.augment, cache=student.cache, kd=replace(teacher.kd, unlabeled=student.kd.unlabeled)
    )
    return Job(student, teacher, _members(teacher, run_dir, seeds), run_dir, _cache_path(teacher, student, run_dir),
               student_dir, cache_recipe)  # fmt: skip


ROUND_TEACHERS = {
    "student": "the last round's student alone",
    "ensemble": "the last round's student and the first round's teacher(s), their mean logits",
}
MIN_CHANGE = 0.005  # a round that changes fewer of its teacher's transfer-set predictions than this ends the rounds


def next_round(first: Job, last: Job, k: int, teachers: str = "student") -> Job:
    """Round ``k`` (>= 2) of self-training: ``last`` round's student teaches (with the first round's teachers for
    ``ensemble``) a fresh student (seed + k - 1: another initialisation and order) on the same data, views and
    transfer set, into ``RUNS/<student>-round<k>``; its cache lives in the run that teaches."""
    student = replace(first.student, seed=first.student.seed + k - 1)
    members = [last.student_dir] if teachers == "student" else [*first.members, last.student_dir]
    cache_recipe = replace(last.student, augment=student.augment, cache=student.cache,
                           kd=replace(last.student.kd, unlabeled=student.kd.unlabeled))  # fmt: skip
    cache = last.student_dir / f"cache-round{k}{'' if teachers == 'student' else '-' + teachers}"
    student_dir = first.student_dir.parent / f"{student.name}-round{k}"
    return Job(student, last.student, members, last.student_dir, cache, student_dir, cache_recipe)


def resolve_rounds(student: Recipe, runs: Path, overrides: list[str], rounds: int, teachers: str) -> list[Job]:
    """The job of each round: round 1 is :func:`resolve`'s, each later one :func:`next_round` of the one before."""
    jobs = [resolve(student, runs, overrides)]
    for k in range(2, rounds + 1):
        jobs.append(next_round(jobs[0], jobs[-1], k, teachers))
    return jobs


def round_images(student: Recipe) -> tuple[np.ndarray, str]:
    """The images a round's agreement is counted on: the transfer set, or the training images without one."""
    if student.kd.unlabeled:
        return load_unlabeled(student.kd.unlabeled).images, "transfer-set"
    return load_data(student.data)[0].images, "training"


def predicted(run_dirs: list[Path], images: np.ndarray) -> np.ndarray:
    """The class the mean logits of ``run_dirs`` give each image, each run with its recipe's TTA and arithmetic."""
    total = None
    for d in run_dirs:
        recipe, model = load_run(d)
        compute = Compute.resolve(recipe.train.mixed_precision)
        with torch.inference_mode():
            logits = predict_logits(model.to(compute.device), torch.from_numpy(images).to(compute.device),
                                    recipe.train.eval_batch_size, tta=recipe.tta,
                                    channels_last=recipe.train.channels_last, compute=compute)  # fmt: skip
        total = logits if total is None else total + logits
    return total.argmax(-1).cpu().numpy()


def round_record(job: Job, k: int) -> dict:
    """``ROUND`` of round ``k``'s finished student (computed once, and again only if its weights changed): its
    teachers, and how many of their predictions on the round's images the student changes."""
    path, weights = job.student_dir / ROUND, sha256_file(job.student_dir / WEIGHTS)
    if path.is_file() and (found := json.loads(path.read_text())).get("student_weights_sha256") == weights:
        return found
    images, kind = round_images(job.student)
    before, after = predicted(job.members, images), predicted([job.student_dir], images)
    changed = int((before != after).sum())
    record = {
        "round": k,
        "taught_by": [{"run_dir": str(d.resolve()), "weights_sha256": sha256_file(d / WEIGHTS)} for d in job.members],
        "cache": str(job.cache.resolve()),
        "student_weights_sha256": weights,
        "images": kind,
        "count": len(images),
        "changed": changed,
        "agreement": 1 - changed / max(len(images), 1),
    }
    write_json(path, record)
    return record


def round_line(record: dict) -> str:
    """What a round changed, in one line."""
    n, changed = record["count"], record["changed"]
    taught = " + ".join(Path(t["run_dir"]).name for t in record["taught_by"])
    return (
        f"round {record['round']} (taught by {taught}) changed {changed:,} of its teachers' {n:,} {record['images']} "
        f"predictions ({100 * changed / max(n, 1):.2f}%; agreement {100 * record['agreement']:.2f}%)"
    )


def rounds_left(jobs: list[Job], min_change: float) -> list[Job]:
    """The rounds to run: all, but none after a finished round that changed fewer than ``min_change`` of its
    teachers' predictions (another round would learn almost the same targets: confirmation, not correction)."""
    for k, job in enumerate(jobs[:-1], 1):
        if (job.student_dir / ROUND).is_file() and (job.student_dir / WEIGHTS).is_file():
            if _changed_too_little(_record(job), min_change):
                return jobs[:k]
    return jobs


def _changed_too_little(record: dict, min_change: float) -> bool:
    """Whether a round changed fewer than ``min_change`` of its teachers' predictions: the rounds end there."""
    return record["changed"] < min_change * record["count"]


def _teacher_stage(job: Job) -> Stage:
    done = [(d / "summary.json").is_file() for d in job.members]
    who = f"{job.teacher.name} x{len(job.members)}"
    if all(done):
        for k, d in enumerate(job.members):
            member = replace(job.teacher, seed=job.teacher.seed + k) if len(job.members) > 1 else job.teacher
            check_same_recipe(d, member, fix=OTHER_RUNS, what="the teacher stage with")
            check_weights(d, AGAIN)
        return Stage("teacher", job.teacher_dir, "reuse", f"{who} finished")
    stopped = any((d / "state").is_dir() or (d / "summary.json").is_file() for d in job.members)
    if stopped:
        return Stage("teacher", job.teacher_dir, "resume", f"{who}: {sum(done)} finished, the rest from a checkpoint")
    return Stage("teacher", job.teacher_dir, "train", f"{who}: not trained yet")


def _cache_fits(job: Job) -> Mismatch | None:
    """Why the cache at ``job.cache`` cannot serve the student (None if it can): its spec against the one asked for
    (the finished teachers' weights, the student's data, split, views, seed and transfer set)."""
    if not (job.cache / "meta.json").is_file():
        return Mismatch("absent", "no cache there yet")
    try:
        found = LogitCache.load(job.cache)
    except UserError as why:  # damaged, another format version, or stale against a teacher run's files
        return Mismatch("unreadable", str(why))
    return found.cache_spec.mismatch(expected_spec(job.student, [sha256_file(d / WEIGHTS) for d in job.members]))


def _cache_stage(job: Job, teacher: Stage, k: int = 1) -> Stage:
    """Round ``k``'s cache, whose ``teacher`` stage is the teacher's (round 1) or the round before's student."""
    if teacher.action != "reuse":
        return Stage("cache", job.cache, "build", "after the teacher stage" if k == 1 else f"after round {k - 1}", k)
    why = _cache_fits(job)
    if why is None:
        return Stage("cache", job.cache, "reuse", "holds the finished teachers' logits on the student's views", k)
    return Stage("cache", job.cache, "build" if why.kind == "absent" else "rebuild", why.reason, k)


def _student_stage(job: Job, cache: Stage | None) -> Stage:
    """Reuse a finished student only if it was trained on the very cache it would get now; else refuse."""
    d = job.student_dir
    if (d / "summary.json").is_file():
        check_same_recipe(d, job.student, fix=OTHER_RUNS, what="the student stage with")
        check_weights(d, AGAIN)
        if cache is not None:
            recorded = started_with(d, "teacher_cache_key")
            found = LogitCache.load(job.cache) if cache.action == "reuse" else None
            now = found.key if found is not None else None
            # students trained before the spec recorded the cache's files_key: theirs still matches
            if recorded is None or recorded not in (now, found and found.files_key):
                change = "the cache is to be rebuilt" if now is None else f"the cache is now {now}"
                raise UserError(
                    f"student {d} is finished but was trained on cache {recorded or '(not recorded)'}, and {change} "
                    f"({cache.why}); its results would not be those of this job: move {d} aside (or delete it) and "
                    f"{AGAIN} to retrain it"
                )
        return Stage("student", d, "reuse", "finished, on this cache" if cache else "finished")
    if (d / "state").is_dir():
        return Stage("student", d, "resume", "stopped after a checkpoint")
    return Stage("student", d, "train", "not trained yet")


def plan(jobs: list[Job], out: Path) -> list[Stage]:
    """What the job would do now, stage by stage and round by round, and why; raises a UserError for a stage it must
    refuse. Round k's teacher stage is round k - 1's student stage."""
    stages, teacher = [], None
    for k, job in enumerate(jobs, 1):
        cache = None
        if job.teacher is not None:
            if k == 1:
                teacher = _teacher_stage(job)
                stages.append(teacher)
            cache = _cache_stage(job, teacher, k)
            stages.append(cache)
        teacher = replace(_student_stage(job, cache), round=k)
        stages.append(teacher)
    report = jobs[-1].student_dir / "report"
    fresh = all(s.action == "reuse" for s in stages if s.name == "student") and (report / "report.md").is_file()
    who = "the last round's student" if len(jobs) > 1 else "the student"
    return [
        *stages,
        Stage("report", report, "leave" if fresh else "write", "exists" if fresh else "of the runs above"),
        Stage("csv", out, "write", f"predicted by {who}"),
    ]


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


def _check_student_recipe(student: Recipe) -> None:
    entry = timm.models.model_entrypoint(student.model.name) if timm.is_model(student.model.name) else None
    module = getattr(entry, "__module__", "")
    if module.startswith("teachers"):
        raise UserError(
            f"recipe '{student.name}' is a teacher recipe (model {student.model.name} is a teacher, from teachers/); "
            f"give a student recipe as --student-recipe, one whose kd.teacher names it (e.g. kd_fast94 names "
            f"teacher_96)"
        )
    if student.kd.alpha > 0 and not student.kd.teacher:
        raise UserError(f"recipe '{student.name}' distils but names no kd.teacher; set kd.teacher=RECIPE")


def _check_rounds(student: Recipe, rounds: int, round_teachers: str, min_change: float) -> None:
    if rounds < 1:
        raise UserError(f"--rounds {rounds}: give 1 (no self-training) or more")
    if rounds > 1 and student.kd.alpha == 0:
        raise UserError(
            f"--rounds {rounds} needs a student that distils, and recipe '{student.name}' has kd.alpha=0 (labels "
            f"alone): round 2 learns from round 1's logits; set kd.alpha above 0, or leave --rounds at 1"
        )
    if round_teachers not in ROUND_TEACHERS:
        raise UserError(f"--round-teachers {round_teachers}: choose one of {', '.join(ROUND_TEACHERS)}")
    if not 0 <= min_change < 1:
        raise UserError(f"--min-change {min_change}: give a fraction of the predictions, from 0 up to 1")


def run_pipeline(
    student_recipe: str,
    test_pkl: str | Path,
    out: str | Path,
    runs: str | Path = "runs",
    overrides: list[str] = (),
    unlabeled: list[str] | None = None,
    bn_stats: str = "train",
    dry_run: bool = False,
    rounds: int = 1,
    round_teachers: str = "student",
    min_change: float = MIN_CHANGE,
) -> dict:
    """Teacher, cache, student, report and CSV, each skipped when done; returns the CSV's check.

    ``unlabeled`` files are the student's transfer set (``kd.unlabeled``); ``bn_stats`` goes to the export.
    With ``dry_run`` it prints the plan (each stage: run, skip or redo, and why) and returns it, running nothing.
    ``rounds`` > 1 adds rounds of self-training (:func:`next_round`); they stop early after a round that changed
    fewer than ``min_change`` of its teachers' predictions. Every message of every stage speaks distill-run's words
    (``--runs-dir``, "run the same command again")."""
    with speaking(DISTILL_RUN):
        return _run_pipeline(student_recipe, test_pkl, out, runs, overrides, unlabeled, bn_stats, dry_run, rounds,
                             round_teachers, min_change)  # fmt: skip


def _run_pipeline(student_recipe, test_pkl, out, runs, overrides, unlabeled, bn_stats, dry_run, rounds,
                  round_teachers, min_change) -> dict:  # fmt: skip
    from distill import export, report  # the last stages' imports (matplotlib) only when they run

    student = load_recipe(student_recipe, with_unlabeled(list(overrides), unlabeled))
    out, runs = Path(out), Path(runs)
    _check_student_recipe(student)
    _check_rounds(student, rounds, round_teachers, min_change)
    export.check_out(out)  # every input checked before the first stage starts
    check_distinct(out, [Path(test_pkl), *map(Path, student.kd.unlabeled), runs], "--out")
    images, _ = load_test_pickle(test_pkl)
    if bn_stats == "test" and len(images) < MIN_BN_IMAGES:  # known now: refused before a teacher trains for hours
        raise UserError(
            f"--bn-stats test needs at least {MIN_BN_IMAGES} images to estimate BatchNorm statistics from, and "
            f"{test_pkl} holds {len(images)}; leave --bn-stats at train"
        )
    if not dry_run:
        check_writable(runs, flag="--runs-dir")  # before the first stage, not when the teacher's run dir is made
    jobs = rounds_left(resolve_rounds(student, runs, list(overrides), rounds, round_teachers), min_change)
    stages = plan(jobs, out)
    accelerator = make_accelerator(student)
    if dry_run:
        if (line := switches(student, bn_stats)) is not None:
            _say(None, f"switches in use: {line}")
        if len(jobs) < rounds:
            _say(None, f"rounds: {len(jobs)} of {rounds}; {round_line(_record(jobs[-1]))}, fewer than --min-change")
        for stage in stages:
            _say(None, f"would {stage.line()}")
        say_estimate(jobs, stages, accelerator, list(overrides))
        return {"plan": [asdict(s) | {"path": str(s.path)} for s in stages]}
    say_estimate(jobs, stages, accelerator, list(overrides))
    if (line := switches(student, bn_stats)) is not None:
        _say(accelerator, f"switches in use: {line}")
    done, reused = [], True
    for k, job in enumerate(jobs, 1):
        if k == 1:
            stage = _first_round(job, [s for s in stages if s.round == 1], accelerator)
        else:  # the cache judged now that the round before has finished (the plan could only say "after it")
            cache = _cache_stage(job, Stage("student", job.teacher_dir, "reuse", "finished", k - 1), k)
            _say(accelerator, cache.line())
            if cache.action != "reuse":
                cache_teachers([TeacherRun.load(d) for d in job.members], job.cache_recipe, accelerator, job.cache)
            stage = replace(_student_stage(job, replace(cache, action="reuse")), round=k)
        _say(accelerator, stage.line())
        if stage.action != "reuse":
            train(job.student, "student", job.student_dir, accelerator, resume=stage.action == "resume",
                  teacher_cache=job.cache, again=AGAIN)  # fmt: skip
        done.append(job)
        reused &= stage.action == "reuse"
        if len(jobs) > 1 and _end_of_round(job, k, k == len(jobs), min_change, accelerator):
            break
    check = {}
    if accelerator.is_main_process:
        last = done[-1].student_dir
        report_dir = last / "report"
        if (report_dir / "report.md").is_file() and reused:
            _say(accelerator, Stage("report", report_dir, "leave", "exists").line())
        else:
            report.make_report([*jobs[0].members, *(j.student_dir for j in done)], report_dir, student.data.dir)
        check = export.export(last, test_pkl, out, bn_stats)
    accelerator.wait_for_everyone()
    return check


def _first_round(job: Job, stages: list[Stage], accelerator) -> Stage:
    """Round 1's teacher and cache stages, run as planned; returns its student stage."""
    by_name = {s.name: s for s in stages}
    if job.teacher is not None:
        teacher, cache = by_name["teacher"], by_name["cache"]
        _say(accelerator, teacher.line())
        if teacher.action != "reuse":
            resume = teacher.action == "resume"
            train_teachers(job.teacher, job.teacher_dir, accelerator, len(job.members), resume=resume,
                           cache_recipe=job.cache_recipe, cache=job.cache, again=AGAIN)  # fmt: skip
        else:
            _say(accelerator, cache.line())
            if cache.action != "reuse":
                cache_teachers([TeacherRun.load(d) for d in job.members], job.cache_recipe, accelerator, job.cache)
    return by_name["student"]


def _record(job: Job) -> dict:
    return json.loads((job.student_dir / ROUND).read_text())


def _end_of_round(job: Job, k: int, last: bool, min_change: float, accelerator) -> bool:
    """Record round ``k`` (on the main process), say what it changed; True when the rounds stop here early."""
    if accelerator.is_main_process:
        round_record(job, k)
    accelerator.wait_for_everyone()
    record = _record(job)
    _say(accelerator, round_line(record))
    if last or not _changed_too_little(record, min_change):
        return False
    _say(
        accelerator,
        f"stopping after round {k}: it changed fewer than {100 * min_change:g}% of its teachers' predictions, so "
        f"another round would learn almost the same targets (--min-change sets the fraction)",
    )
    return True


def _images(recipe: Recipe) -> int:
    """The images an epoch trains on: the data's, when it is there (read once per command), else CIFAR-10's count."""
    data = recipe.data
    if (Path(data.dir) / BATCH_DIR / "data_batch_1").is_file():
        train = len(load_data(replace(data, download=False))[0])
    else:  # not downloaded yet
        train = min(data.train_limit or 50_000, 50_000) - data.val_size
    unlabeled = len(load_unlabeled(recipe.kd.unlabeled)) if recipe.kd.unlabeled else 0
    return max(train, 0) + unlabeled


def estimate(job: Job, stages: list[Stage], accelerator, rates: dict | None = None) -> dict[str, float]:
    """Seconds each stage that will run should take on this device, from a short probe of each model's speed
    (:func:`~distill.engine.probe_rate`, once per model in ``rates``): epochs x images / training rate (a selecting
    epoch counts as its share of the images), view sets x images / inference rate."""
    rates = {} if rates is None else rates

    def rate(recipe: Recipe, train: bool) -> float:
        key = (recipe.model.name, repr(sorted(recipe.model.kwargs.items())), recipe.train.channels_last, train)
        if key not in rates:
            rates[key] = probe_rate(recipe, accelerator, train)
        return rates[key]

    todo = {s.name for s in stages if s.action in ("train", "resume", "build", "rebuild")}
    seconds = {}
    if job.teacher is not None and "teacher" in todo:
        n = len(job.members) * _image_epochs(job.teacher) * _images(job.teacher)
        seconds["teacher"] = n / rate(job.teacher, True)
    if job.teacher is not None and ("cache" in todo or "teacher" in todo):
        n = len(job.members) * max(job.cache_recipe.cache.views, 1) * _images(job.cache_recipe)
        seconds["cache"] = n / rate(job.teacher, False)
    if "student" in todo:
        seconds["student"] = _image_epochs(job.student) * _images(job.student) / rate(job.student, True)
    return seconds


def _image_epochs(recipe: Recipe) -> float:
    cfg = recipe.train
    return image_epochs(cfg.epochs, cfg.select_fraction, cfg.select_after)


def _minutes(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{max(minutes, 1)} min"


def say_estimate(jobs: list[Job], stages: list[Stage], accelerator, overrides: list[str]) -> dict[str, float]:
    """One line before the first stage: each stage's estimated time here (each later round's in one), and the whole;
    past :data:`LONG`, a second line naming :data:`FASTER` with its own estimate (the job still runs: the user chose
    it)."""
    rates: dict[tuple, float] = {}
    job = jobs[0]
    seconds = estimate(job, [s for s in stages if s.round == 1], accelerator, rates)
    for k, later in enumerate(jobs[1:], 2):
        if each := estimate(later, [s for s in stages if s.round == k], accelerator, rates):
            seconds[f"round {k}"] = sum(each.values())
    if not seconds:
        return seconds
    total = sum(seconds.values())
    where = (
        f"{accelerator.device.type}, {accelerator.mixed_precision if accelerator.mixed_precision != 'no' else 'fp32'}"
    )
    parts = ", ".join(f"{name} about {_minutes(s)}" for name, s in seconds.items())
    _say(accelerator, f"estimate on this machine ({where}): {parts}; about {_minutes(total)} in all")
    if total > LONG and job.student.name != FASTER:
        faster = resolve(load_recipe(FASTER, overrides), Path("/nonexistent"), overrides)
        quick = sum(estimate(faster, [Stage(n, Path("."), "train", "") for n in ("teacher", "cache", "student")],
                             accelerator).values())  # fmt: skip
        _say(
            accelerator,
            f"that is over an hour on this machine; --student-recipe {FASTER} is the fastest measured recipe (about "
            f"{_minutes(quick)} here by the same estimate), and kd_smoke tries the whole pipeline in a minute",
        )
    return seconds


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help, and the epilog as written: the contest command on one line, to copy whole."""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description="Teacher -> cache -> student -> report -> submission CSV, each stage skipped once done.",
        epilog=f"the contest command, the best combination measured (BENCHMARKS.md): {CONTEST}",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--student-recipe", default="kd_t4", help="recipe of the student (names its teacher)")
    parser.add_argument("--test-pkl", required=True, help="the competition's test pickle")
    parser.add_argument("--out", default="submission.csv", help="the CSV to write")
    parser.add_argument("--runs-dir", default="runs", help="where the teacher and student runs go")
    parser.add_argument("--data-dir", help="holds, or receives, cifar-10-batches-py/ (sets data.dir)")
    parser.add_argument("--unlabeled", action="append", metavar="FILE", help=UNLABELED_HELP + "; the student's only")
    parser.add_argument("--bn-stats", choices=BN_STATS, default="train", help=BN_STATS_HELP)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of self-training: round k+1 distils from round k's student on the same transfer set into "
        "RUNS/<student>-round<k+1> (1: none)",
    )
    parser.add_argument(
        "--round-teachers", choices=ROUND_TEACHERS, default="student",
        help="who teaches each later round: " + "; ".join(f"{k}: {v}" for k, v in ROUND_TEACHERS.items()),
    )  # fmt: skip
    parser.add_argument(
        "--min-change",
        type=float,
        default=MIN_CHANGE,
        help="stop the rounds after one that changed fewer than this fraction of its teachers' predictions",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print each stage: run, skip or redo, and why; then exit, running nothing",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="overrides for both recipes (kd.*: the student's only)"
    )
    args = parser.parse_intermixed_args(argv)
    overrides = with_data_dir(args.overrides, args.data_dir)
    return run_pipeline(
        args.student_recipe, args.test_pkl, args.out, args.runs_dir, overrides, args.unlabeled, args.bn_stats,
        args.dry_run, args.rounds, args.round_teachers, args.min_change,
    )  # fmt: skip


def cli() -> None:
    cli_main(main)


if __name__ == "__main__":
    cli()
