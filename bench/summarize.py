"""Issue 10's targets, met or missed, from the JSONs of the frontier device plan (python -m bench.device frontier); and the frontier plot.

    python bench/summarize.py OUT_DIR      # reads OUT_DIR/{fast94,max,fast96,ce96,half}.json

Prints a table, writes it to ``OUT_DIR/summary.md`` and plots test accuracy against GPU seconds (every
teacher and student, with the airbench anchors) to ``OUT_DIR/frontier.png``. A missing step is shown
as not measured.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from distill.report import plot_frontier

# (what, step, where the accuracy is read, target accuracy, where the seconds are read, target seconds)
TARGETS = [
    ("teacher_96", "fast94", "teacher", 0.960, "teacher", 20.0),
    ("teacher_97 ensemble", "max", "ensemble", 0.970, "teachers", 300.0),
    ("kd_fast94", "fast94", "student", 0.940, "student", 2.0),
    ("kd_fast96", "fast96", "student", 0.960, "student", 16.0),
    ("kd_max (teachers + cache + student)", "max", "student", 0.968, "pipeline", 360.0),
    ("kd_fast96's twin on labels alone", "ce96", "student", None, "student", None),
    ("kd_max at half the epochs (student only)", "half", "student", None, "student", None),
    ("kd_fast94 with train.compile (compiling apart)", "fast94c", "student", None, "student", None),
    ("kd_fast94_lite (kd_fast94 before issue 24)", "fast94lite", "student", None, "student", None),
]


def _accuracy(r: dict, where: str) -> float | None:
    if where == "teacher":
        return r["teacher"]["test_accuracy"]
    if where == "ensemble":
        return r.get("ensemble_test_accuracy", r["teacher"]["test_accuracy"])
    return r["student_test_accuracy"]["mean"]


def _seconds(r: dict, where: str) -> float | None:
    teachers = sum(teacher["train_seconds"] for teacher in r.get("teachers", []) if not teacher.get("reused"))
    if where == "teacher":
        return r["teacher"]["train_seconds"]
    if where == "teachers":
        return teachers
    if where == "pipeline":  # training and caching seconds on the device: teachers, cache, one student
        return teachers + r.get("cache_seconds", 0.0) + r["student_runs"][0]["train_seconds"]
    return r["student_train_seconds"]["mean"]


def summarize(out: Path) -> str:
    partial = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    results = {k: r for k, r in partial.items() if r.get("complete")}
    cut = {k: r for k, r in partial.items() if not r.get("complete")}
    device = next((r["device"] for r in results.values()), "?")
    commit = next((str(r["commit"])[:10] for r in results.values()), "?")
    lines = [
        f"Issue 10 on {device} at {commit}",
        "",
        "| what | test accuracy | target | seconds | target | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for what, step, acc_at, acc_target, sec_at, sec_target in TARGETS:
        if step not in results:
            lines.append(f"| {what} | not measured | {_fmt(acc_target, '{:.1%}')} | | {_fmt(sec_target, '{:.0f}')} | |")
            continue
        r = results[step]
        acc, sec = _accuracy(r, acc_at), _seconds(r, sec_at)
        met = "" if acc_target is None else ("yes" if acc >= acc_target and sec <= sec_target else "no")
        n = len(r["student_runs"]) if acc_at == "student" else 1
        spread = f" ± {r['student_test_accuracy']['std']:.2%} (n={n})" if acc_at == "student" and n > 1 else ""
        lines.append(
            f"| {what} | {acc:.2%}{spread} | {_fmt(acc_target, '{:.1%}')} | {sec:.1f} | "
            f"{_fmt(sec_target, '{:.0f}')} | {met} |"
        )
    for step, r in cut.items():  # stopped by its time limit: what it measured before
        teachers = ", ".join(f"{t['recipe']} s{t['seed']} {t['test_accuracy']:.2%} in {t['train_seconds']:.1f} s"
                             for t in r.get("teachers", []))  # fmt: skip
        runs = ", ".join(f"{x['test_accuracy']:.2%} in {x['train_seconds']:.1f} s" for x in r.get("student_runs", []))
        lines += [
            "",
            f"Step {step} did not finish; it measured teachers: {teachers or 'none'}; students: {runs or 'none'}.",
        ]
    if "fast94c" in results:
        r = results["fast94c"]
        eager = results.get("fast94", {}).get("student_train_seconds", {}).get("mean")
        lines += [
            "",
            f"torch.compile: the warm-up's first step (compiling) took {r['student_warmup_first_step_seconds']:.1f} s; "
            f"then {r['student_train_seconds']['mean']:.2f} s per run"
            + (f" against {eager:.2f} s eager." if eager else "."),
        ]
    if "fast94lite" in results and "fast94" in results:
        new, old = results["fast94"], results["fast94lite"]
        gain = new["student_test_accuracy"]["mean"] - old["student_test_accuracy"]["mean"]
        ratio = new["student_train_seconds"]["mean"] / old["student_train_seconds"]["mean"]
        lines += ["", f"kd_fast94's student against kd_fast94_lite's (before issue 24), same teacher: {100 * gain:+.2f} "
                      f"points, {ratio:.2f}x the seconds per run."]  # fmt: skip
    if "fast96" in results and "ce96" in results:
        gain = results["fast96"]["student_test_accuracy"]["mean"] - results["ce96"]["student_test_accuracy"]["mean"]
        lines += ["", f"KD bought {100 * gain:+.2f} points for kd_fast96 over its twin on labels alone."]
    if results:
        plot_frontier(
            [{**r, "label": f"{r['student_recipe']} [{step}]"} for step, r in results.items()], out / "frontier.png"
        )
        lines += ["", f"Plot: {out / 'frontier.png'}"]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def _fmt(value, spec: str) -> str:
    return "" if value is None else spec.format(value)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else "bench_out")))
