"""Benchmark: teacher(s) -> cache -> N student runs, timed, on whatever device is present.

    python bench/bench.py --teacher-recipe teacher_96 --student-recipe kd_fast94 --runs 3 --json out.json
    python bench/bench.py --teacher-recipe teacher_97 --teacher-seeds 3 --student-recipe kd_max --runs 1
    python bench/bench.py --student-recipe ce_fast96 --runs 1          # labels only: no teacher, no cache
    python bench/bench.py --teacher-recipe teacher_smoke --student-recipe kd_smoke --runs 2 data.train_limit=500

Prints a table and writes a JSON with: device, commit, each teacher's training seconds / accuracy /
img/s, the ensemble's accuracy (mean logits, with the teacher recipe's TTA) when there are several,
cache seconds and size (the teachers' logits on the student's views, which may differ from the
teachers' own training augmentation), a warm-up student run (reported on its own, not in the
statistics), then per-run student training seconds (CUDA events around each epoch's training steps;
evaluation excluded), test accuracy under each TTA, img/s, their mean and std, and the student's
parameters. Each model's FLOPs per image (``distill.models.count_flops``, at 32x32) times its img/s
gives the TFLOP/s it achieved. ``pipeline_seconds`` is the wall clock from the start of teacher
training to the end of the first timed student run, everything included (evaluations, caching,
warm-up). Trailing ``key=value`` overrides go to every recipe; ``--student-set`` ones to the student's,
``--teacher-set`` ones to the teachers' (e.g. ``train.label_smoothing=0`` for the teacher alone). A student
with a transfer set (``kd.unlabeled``) gets a cache that holds it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from distill import engine
from distill.augment import TTA_VARIANTS
from distill.cache_logits import TeacherRun, cache_runs
from distill.cli import with_data_dir
from distill.data import load_data, load_transfer_set
from distill.devices import make_accelerator
from distill.engine import bare_step
from distill.errors import UserError, cli_main
from distill.files import write_json
from distill.logit_cache import LogitCache
from distill.models import count_flops, create_model
from distill.recipe import Recipe, load_recipe, recipe_from_dict
from distill.runs import git_commit
from distill.train_teacher import train_teachers
from distill.trainer import train


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _throughput(run_dir: Path) -> float:
    """Median training img/s over the run's epochs (the first epoch, which warms up, left out if others exist)."""
    lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    values = [ln["img_per_s"] for ln in lines[1:] or lines]
    return statistics.median(values)


def _first_step(run_dir: Path) -> float:
    """Seconds of the run's first optimiser step (with ``train.compile``, mostly compiling)."""
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    return first.get("first_step_seconds", 0.0)


def _accuracy_by_tta(res, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Test accuracy of ``res.model`` under each of TTA_VARIANTS; ``images``/``labels``: the test set on the device."""
    cfg = recipe.train
    return {
        name: engine.evaluate(res.model, images, labels, res.accelerator, cfg.eval_batch_size, tta, cfg.channels_last)
        for name, tta in TTA_VARIANTS.items()
    }


def _compute(model: torch.nn.Module, img_per_s: float) -> dict:
    """GFLOPs of one training image and the TFLOP/s that ``img_per_s`` of them achieve."""
    flops = count_flops(model)["train_step"]
    return {"train_gflop_per_image": flops / 1e9, "train_tflop_per_s": flops * img_per_s / 1e12}


def _describe_teacher(run_dir: Path, reused: bool) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())  # what train() wrote, trained here or reused
    img_per_s = _throughput(run_dir)
    return {
        "recipe": summary["recipe"]["name"],
        "model": summary["model"],
        "run_dir": str(run_dir),
        **({"reused": True} if reused else {}),
        "seed": summary["recipe"]["seed"],
        "params": summary["trainable_params"],
        "train_seconds": summary["wall_seconds"],
        "test_accuracy": summary["test_accuracy"],
        "img_per_s": img_per_s,
        **_compute(create_model(summary["model"], summary["recipe"]["model"]["kwargs"]), img_per_s),
    }


def _ensemble_accuracy(teachers: list[TeacherRun], test, accelerator) -> float:
    """Accuracy of the teachers' mean logits (each with its recipe's TTA) on the test set: what the cache averages."""
    images = torch.from_numpy(test.images).to(accelerator.device)
    total = 0
    for teacher in teachers:
        model, recipe = teacher.model.to(accelerator.device).eval(), teacher.recipe
        total = total + engine.predict_logits(model, images, 1000, accelerator, recipe.tta, recipe.train.channels_last)
    return float((total.argmax(-1).cpu().numpy() == test.labels).mean())


def _student_views(student: Recipe) -> list[str]:
    """Overrides that give a teacher's recipe the student's views: its augmentation and cache settings, and its
    transfer set (the images the cache must hold besides the training set)."""
    views = [
        f"{section}.{k}={json.dumps(v)}"
        for section in ("augment", "cache")
        for k, v in vars(getattr(student, section)).items()
    ]
    return views + ([f"kd.unlabeled={json.dumps(list(student.kd.unlabeled))}"] if student.kd.unlabeled else [])


def _teachers_and_cache(args, student: Recipe, overrides: list[str], accelerator, result: dict) -> Path | None:
    """Train the teachers (or reuse ``--teacher-run``s) and return a cache of them on the student's views."""
    if student.kd.alpha == 0:
        return None  # labels only: no teacher, no cache
    keep = ("data.", "augment.", "cache.")  # what the cache must share with the student
    cache_overrides = [o for o in overrides if o.startswith(keep)] + _student_views(student)
    if args.teacher_run:
        if args.teacher_set:
            raise UserError("--teacher-set changes a teacher bench.py trains; a --teacher-run is trained already")
        runs = [Path(run) for run in args.teacher_run]
        result["teachers"] = [_describe_teacher(run, reused=True) for run in runs]
        given = Path(args.teacher_cache) if args.teacher_cache else (runs[0] / "cache" if len(runs) == 1 else None)
        try:  # the given cache (or a single teacher's own), if it fits the student
            if given is not None:
                cache = LogitCache.load(given)
                train_split = load_data(student.data)[0]
                transfer = load_transfer_set(student.kd.unlabeled, train_split, say=False)
                cache.check_matches(train_split, student.augment, student.cache.views, student.data, transfer,
                                    seed=student.cache.seed)  # fmt: skip
                result["cache"] = {"views": cache.num_views, "reused": str(given)}
                return given
        except UserError:
            if args.teacher_cache:
                raise
            # e.g. the student asks for alternating flips or other views: cache again
        cache = cache_runs(runs, args.work_dir / "cache", cache_overrides)
        teachers = [TeacherRun.load(run) for run in runs]
    else:
        t_recipe = load_recipe(args.teacher_recipe, [*overrides, *args.teacher_set])
        cache_recipe = recipe_from_dict(t_recipe.to_dict(), cache_overrides)
        _, teachers, cache = train_teachers(
            t_recipe, args.work_dir / "teacher", accelerator, args.teacher_seeds, cache_recipe=cache_recipe
        )
        result["teachers"] = [_describe_teacher(teacher.run_dir, reused=False) for teacher in teachers]
    meta = LogitCache.load(cache).meta
    result["cache_seconds"] = meta["build_seconds"]
    result["cache"] = {"views": meta["views"], "mib": sum(f.stat().st_size for f in cache.iterdir()) / 2**20}
    if len(teachers) > 1:
        result["ensemble_test_accuracy"] = _ensemble_accuracy(teachers, load_data(student.data)[2], accelerator)
    return cache


def bench(args: argparse.Namespace, overrides: list[str]) -> dict:
    """Run the benchmark; see the module docstring for what is measured."""
    student_overrides = [*overrides, *args.student_set]
    student_base = load_recipe(args.student_recipe, student_overrides)
    if student_base.data.train_on_test:
        raise UserError(
            "bench.py measures test accuracy, and data.train_on_test=true trains on the test split; drop it"
        )
    accelerator = make_accelerator(student_base)
    result: dict = {
        "commit": git_commit(),
        "command": " ".join(["bench/bench.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if accelerator.device.type == "cuda" else str(accelerator.device),
        "student_recipe": student_base.name,
        "student_kd": dataclasses.asdict(student_base.kd),  # the loss, T, alpha and transfer set the runs used
        "student_set": args.student_set,  # what the runs change in the student's recipe
    }
    t0 = time.perf_counter()

    def save(stage: str) -> None:  # after each stage, so a run cut off by its time limit keeps what it measured
        result["complete"] = stage == "done"
        if args.json and accelerator.is_main_process:
            write_json(Path(args.json), result)

    cache = _teachers_and_cache(args, student_base, overrides, accelerator, result)
    if "teachers" in result:
        result["teacher"] = result["teachers"][0]
        save("teachers")

    def student(name: str, extra: list[str]):
        recipe = load_recipe(args.student_recipe, [*student_overrides, *extra])
        return recipe, train(recipe, "student", args.work_dir / name, accelerator, teacher_cache=cache)

    if not args.no_warmup:  # compile, cuDNN autotuning and allocator warm-up, timed apart from the runs
        warmup = student("student_warmup", ["train.epochs=1"])[1]
        result["student_warmup_seconds"] = warmup.summary["wall_seconds"]
        result["student_warmup_first_step_seconds"] = _first_step(warmup.run_dir)  # with train.compile: compiling
    result["student_compile"] = student_base.train.compile
    test = load_data(student_base.data)[2]  # the same for every run (they differ in seed only): read it once
    test_images, test_labels = engine.to_device_data(test.images, test.labels, accelerator.device)
    per_run = []
    for i in range(args.runs):
        recipe, res = student(f"student_{i}", [f"seed={student_base.seed + i}"])
        if i == 0:
            result["pipeline_seconds"] = time.perf_counter() - t0
        per_run.append(
            {
                "seed": recipe.seed,
                "train_seconds": res.summary["wall_seconds"],
                "test_accuracy": res.test_accuracy,
                "test_accuracy_by_tta": _accuracy_by_tta(res, recipe, test_images, test_labels),
                "img_per_s": _throughput(res.run_dir),
                "first_step_seconds": _first_step(res.run_dir),
            }
        )
        result["student_params"] = res.trainable_params
        result["student_runs"] = per_run
        save(f"student {i}")
    result["student_train_seconds"] = _stats([r["train_seconds"] for r in per_run])
    result["student_test_accuracy"] = _stats([r["test_accuracy"] for r in per_run])
    result["student_img_per_s"] = statistics.median(r["img_per_s"] for r in per_run)
    result["student_compute"] = _compute(res.model, result["student_img_per_s"])
    # the same model and per-process batch in a bare step (forward, CE, backward, SGD): what the loop could reach
    per_process = max(recipe.train.batch_size // accelerator.num_processes, 1)
    x = torch.randn(per_process, 3, 32, 32, device=accelerator.device).contiguous(memory_format=torch.channels_last)
    result["student_bare_step_img_per_s"] = bare_step(recipe, res.model, x, accelerator) * accelerator.num_processes
    result["student_loop_share_of_step"] = result["student_img_per_s"] / result["student_bare_step_img_per_s"]
    result["student_test_accuracy_by_tta"] = {
        name: _stats([r["test_accuracy_by_tta"][name] for r in per_run]) for name in TTA_VARIANTS
    }
    save("done")
    _print_table(Console(), result)
    return result


def _print_table(console: Console, r: dict) -> None:
    table = Table(title=f"bench on {r['device']} @ {str(r['commit'])[:10]}")
    for col in ("stage", "params", "seconds", "test accuracy", "img/s", "TFLOP/s"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for teacher in r.get("teachers", []):
        table.add_row(
            f"teacher {teacher['recipe']} seed {teacher['seed']}" + (" (reused)" if teacher.get("reused") else ""),
            f"{teacher['params']:,}",
            f"{teacher['train_seconds']:.2f}",
            f"{teacher['test_accuracy']:.2%}",
            f"{teacher['img_per_s']:,.0f}",
            f"{teacher['train_tflop_per_s']:.2f}",
        )
    if "ensemble_test_accuracy" in r:
        table.add_row(f"ensemble of {len(r['teachers'])} (mean logits)", "", "", f"{r['ensemble_test_accuracy']:.2%}")
    if "cache_seconds" in r:
        cache = f"cache: {r['cache']['views']} view sets, {r['cache']['mib']:.0f} MiB"
        table.add_row(cache, "", f"{r['cache_seconds']:.2f}")
    elif "cache" in r:
        table.add_row(f"cache: {r['cache']['views']} view sets, reused", "", "")
    if "student_warmup_seconds" in r:
        table.add_row("student warm-up (1 epoch)", "", f"{r['student_warmup_seconds']:.2f}", "", "")
        compiled = " (torch.compile: compiling)" if r.get("student_compile") else ""
        table.add_row(f"... its first step{compiled}", "", f"{r['student_warmup_first_step_seconds']:.2f}", "", "")
    for run in r["student_runs"]:
        table.add_row(
            f"student {r['student_recipe']} seed {run['seed']}",
            f"{r['student_params']:,}",
            f"{run['train_seconds']:.2f}",
            f"{run['test_accuracy']:.2%}",
            f"{run['img_per_s']:,.0f}",
        )
    s, a = r["student_train_seconds"], r["student_test_accuracy"]
    table.add_row(
        f"student mean ± std (n={len(r['student_runs'])})",
        "",
        f"{s['mean']:.2f} ± {s['std']:.2f}",
        f"{a['mean']:.2%} ± {a['std']:.2%}",
        f"{r['student_img_per_s']:,.0f}",
        f"{r['student_compute']['train_tflop_per_s']:.2f}",
    )
    table.add_row(
        f"bare step, same model and batch (the loop at {r['student_loop_share_of_step']:.0%} of it)", "", "", "",
        f"{r['student_bare_step_img_per_s']:,.0f}",
    )  # fmt: skip
    by_tta = "  ".join(f"{k} {v['mean']:.2%}" for k, v in r["student_test_accuracy_by_tta"].items())
    table.add_row("student accuracy by TTA (mean)", "", "", by_tta, "")
    table.add_row("everything up to the first student, wall", "", f"{r['pipeline_seconds']:.1f}", "", "")
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Time teacher, cache and student runs on this device.")
    parser.add_argument("--teacher-recipe", default="teacher_96")
    parser.add_argument("--teacher-seeds", type=int, default=1, help="train N teachers and cache their mean logits")
    parser.add_argument("--student-recipe", default="kd_fast94")
    parser.add_argument("--runs", type=int, default=5, help="timed student runs (seeds seed, seed+1, ...)")
    parser.add_argument("--json", help="write the results here (after every stage; 'complete' says whether all ran)")
    parser.add_argument("--work-dir", default="runs/bench", type=Path, help="where the runs go (must not hold runs)")
    parser.add_argument(
        "--teacher-run",
        action="append",
        help="reuse this finished teacher run (and its cache/, if it fits) instead of training one; "
        "repeat it for an ensemble, whose cache is built in WORK_DIR/cache",
    )
    parser.add_argument("--teacher-cache", help="with --teacher-run: use this cache of those teachers as it is")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed 1-epoch student warm-up run")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (sets data.dir for every recipe)")
    parser.add_argument(
        "--student-set", action="append", default=[], metavar="key=value", help="an override for the student only"
    )
    parser.add_argument(
        "--teacher-set", action="append", default=[], metavar="key=value", help="an override for the teachers only"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every recipe")
    args = parser.parse_intermixed_args(argv)
    return bench(args, with_data_dir(args.overrides, args.data_dir))


if __name__ == "__main__":
    cli_main(main)
