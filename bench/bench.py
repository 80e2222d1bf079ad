"""Benchmark: teacher -> cache -> N student runs, timed, on whatever device is present.

    python bench/bench.py --teacher-recipe teacher_fast --student-recipe kd_fast94 --runs 5 --json out.json
    python bench/bench.py --teacher-recipe teacher_smoke --student-recipe kd_smoke --runs 2 data.train_limit=500

Prints a table and writes a JSON with: device, commit, teacher training seconds / accuracy / img/s,
cache seconds (the teacher's logits on the student's views, which may differ from the teacher's own
training augmentation), a warm-up student run (reported on its own, not in the statistics), then per-run
student training seconds (CUDA events around each epoch's training steps; evaluation excluded),
test accuracy, img/s, their mean and std, and the student's parameters. Each model's FLOPs per image
(``students.count_flops``, at 32x32) times its img/s gives the TFLOP/s it achieved. ``pipeline_seconds`` is the
wall clock from the start of teacher training to the end of the first timed student run, everything
included (evaluations, caching, warm-up). Trailing ``key=value`` overrides go to both recipes.
"""

from __future__ import annotations

import argparse
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
from distill.cache_logits import TeacherRun, cache_runs, cache_teachers
from distill.errors import UserError, cli_main
from distill.logit_cache import LogitCache
from distill.recipe import Recipe, load_recipe, recipe_from_dict
from distill.runs import create_model, git_commit, write_json
from distill.trainer import load_data, make_accelerator, train
from students import count_flops


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def _throughput(run_dir: Path) -> float:
    """Median training img/s over the run's epochs (the first epoch, which warms up, left out if others exist)."""
    lines = [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    values = [ln["img_per_s"] for ln in lines[1:] or lines]
    return statistics.median(values)


def _accuracy_by_tta(res, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Test accuracy of ``res.model`` under each of TTA_VARIANTS; ``images``/``labels``: the test set on the device."""
    t = recipe.train
    return {
        name: engine.evaluate(res.model, images, labels, res.accelerator, t.eval_batch_size, tta, t.channels_last)
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
        **({"reused": str(run_dir)} if reused else {}),
        "params": summary["trainable_params"],
        "train_seconds": summary["wall_seconds"],
        "test_accuracy": summary["test_accuracy"],
        "img_per_s": img_per_s,
        **_compute(create_model(load_recipe(run_dir / "recipe.yaml")), img_per_s),
    }


def _student_views(student: Recipe) -> list[str]:
    """Overrides that give a teacher's recipe the student's views: its augmentation and cache settings."""
    return [
        f"{section}.{k}={json.dumps(v)}"
        for section in ("augment", "cache")
        for k, v in vars(getattr(student, section)).items()
    ]


def _reusable_cache(teacher_runs: list[Path], student: Recipe, work_dir: Path, overrides: list[str], result: dict):
    """A single teacher's own cache if it fits the student recipe; else (or for an ensemble) a new one, timed."""
    if len(teacher_runs) == 1:
        try:
            cache = LogitCache.load(teacher_runs[0] / "cache")
            cache.check_matches(load_data(student)[0], student.augment, student.cache.views)
            return cache.path
        except UserError:
            pass  # e.g. the student asks for alternating flips or other views: cache again
    start = time.perf_counter()
    keep = ("data.", "augment.", "cache.")  # what the cache must share with the student
    cache_overrides = [o for o in overrides if o.startswith(keep)] + _student_views(student)
    cache_dir = cache_runs(teacher_runs, work_dir / "cache", cache_overrides)
    result["cache_seconds"] = time.perf_counter() - start
    return cache_dir


def bench(
    teacher_recipe: str,
    student_recipe: str,
    runs: int,
    work_dir: Path,
    overrides: list[str],
    teacher_runs: list[Path] | None = None,
    warmup: bool = True,
) -> dict:
    """Run the benchmark; see the module docstring for what is measured."""
    console = Console()
    student_base = load_recipe(student_recipe, overrides)
    result: dict = {
        "commit": git_commit(),
        "command": " ".join(["bench/bench.py", *sys.argv[1:]]),
        "torch": torch.__version__,
        "student_recipe": student_base.name,
    }
    t0 = time.perf_counter()
    reused = bool(teacher_runs)
    if reused:
        cache_dir = _reusable_cache(teacher_runs, student_base, work_dir, overrides, result)
    else:
        t_recipe = load_recipe(teacher_recipe, overrides)
        teacher_runs = [work_dir / "teacher"]
        t_res = train(t_recipe, "teacher", teacher_runs[0])
        t_cache = time.perf_counter()
        teacher = TeacherRun(t_res.model, teacher_runs[0], t_recipe, t_res.test_accuracy)
        # one cache, with the student's views (which may differ from the teacher's training augmentation)
        cache_recipe = recipe_from_dict(t_recipe.to_dict(), _student_views(student_base))
        cache_dir = cache_teachers([teacher], cache_recipe, t_res.accelerator)
        result["cache_seconds"] = time.perf_counter() - t_cache
    result["teachers"] = [_describe_teacher(run, reused) for run in teacher_runs]
    result["teacher"] = result["teachers"][0]
    accelerator = make_accelerator(student_base)
    result["device"] = torch.cuda.get_device_name() if accelerator.device.type == "cuda" else str(accelerator.device)

    if warmup:  # compile, cuDNN autotuning and allocator warm-up, timed apart from the runs
        w = train(
            load_recipe(student_recipe, [*overrides, "train.epochs=1"]),
            "student",
            work_dir / "student_warmup",
            teacher_cache=cache_dir,
        )
        result["student_warmup_seconds"] = w.summary["wall_seconds"]
    _, test = load_data(student_base)  # the same for every run (they differ in seed only): read it once
    test_images, test_labels = engine.to_device_data(test.images, test.labels, accelerator.device)
    per_run = []
    for i in range(runs):
        recipe = load_recipe(student_recipe, [*overrides, f"seed={student_base.seed + i}"])
        res = train(recipe, "student", work_dir / f"student_{i}", teacher_cache=cache_dir)
        if i == 0 and "cache_seconds" in result:
            result["pipeline_seconds"] = time.perf_counter() - t0
        per_run.append(
            {
                "seed": recipe.seed,
                "train_seconds": res.summary["wall_seconds"],
                "test_accuracy": res.test_accuracy,
                "test_accuracy_by_tta": _accuracy_by_tta(res, recipe, test_images, test_labels),
                "img_per_s": _throughput(res.run_dir),
            }
        )
        result["student_params"] = res.trainable_params
    result["student_runs"] = per_run
    result["student_train_seconds"] = _stats([r["train_seconds"] for r in per_run])
    result["student_test_accuracy"] = _stats([r["test_accuracy"] for r in per_run])
    result["student_img_per_s"] = statistics.median(r["img_per_s"] for r in per_run)
    result["student_compute"] = _compute(res.model, result["student_img_per_s"])
    result["student_test_accuracy_by_tta"] = {
        name: _stats([r["test_accuracy_by_tta"][name] for r in per_run]) for name in TTA_VARIANTS
    }
    _print_table(console, result)
    return result


def _print_table(console: Console, r: dict) -> None:
    t = r["teacher"]
    table = Table(title=f"bench on {r['device']} @ {str(r['commit'])[:10]}")
    for col in ("stage", "params", "seconds", "test accuracy", "img/s", "TFLOP/s"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    table.add_row(
        f"teacher {t['recipe']}" + (" (reused)" if "reused" in t else ""),
        f"{t['params']:,}",
        f"{t['train_seconds']:.2f}",
        f"{t['test_accuracy']:.2%}",
        f"{t['img_per_s']:,.0f}",
        f"{t['train_tflop_per_s']:.2f}",
    )
    if "cache_seconds" in r:
        table.add_row("cache", "", f"{r['cache_seconds']:.2f}", "", "")
    if "student_warmup_seconds" in r:
        table.add_row("student warm-up (1 epoch)", "", f"{r['student_warmup_seconds']:.2f}", "", "")
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
    by_tta = "  ".join(f"{k} {v['mean']:.2%}" for k, v in r["student_test_accuracy_by_tta"].items())
    table.add_row("student accuracy by TTA (mean)", "", "", by_tta, "")
    if "pipeline_seconds" in r:
        table.add_row("teacher + cache + first student, wall", "", f"{r['pipeline_seconds']:.1f}", "", "")
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Time teacher, cache and student runs on this device.")
    parser.add_argument("--teacher-recipe", default="teacher_fast")
    parser.add_argument("--student-recipe", default="kd_fast94")
    parser.add_argument("--runs", type=int, default=5, help="timed student runs (seeds seed, seed+1, ...)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--work-dir", default="runs/bench", help="where the runs are written (must not hold runs)")
    parser.add_argument(
        "--teacher-run",
        action="append",
        help="reuse this finished teacher run (and its cache/, if it fits) instead of training one; "
        "repeat it for an ensemble, whose cache is built in WORK_DIR/cache",
    )
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed 1-epoch student warm-up run")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (sets data.dir for both recipes)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides) + ([f"data.dir={args.data_dir}"] if args.data_dir else [])
    result = bench(
        args.teacher_recipe,
        args.student_recipe,
        args.runs,
        Path(args.work_dir),
        overrides,
        [Path(t) for t in args.teacher_run or []],
        warmup=not args.no_warmup,
    )
    if args.json:
        write_json(Path(args.json), result)
    return result


if __name__ == "__main__":
    cli_main(main)
