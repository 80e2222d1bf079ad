"""The table of a device plan's steps: ``python -m bench.steps_table OUT_DIR PLAN`` (``bench/plans/PLAN.yaml``).

It reads what ``python -m bench.device PLAN`` wrote (``losses``: issue 25, ``ablation``: issue 24, ``speed``: issue
31, ``rounds``: issue 33, ``rung95``: issue 32), rows in the plan's ``table`` order (else its steps'). One row per step: the student's recipe and the overrides its step gave it, its teachers (one,
or an ensemble of N with the ensemble's accuracy, or none), its KD term (read from the step's bench JSON, not
assumed), each seed's accuracy on (a) the CIFAR-10 test set with the recipe's TTA and their mean, the mean on (b)
the seeded corrupted copy and on (c) the reframed copy where ``OUT_DIR/scores.json`` has them, and the student's training seconds. A step that
did not run is listed as such. Writes ``OUT_DIR/<which>.md``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bench.device import expand, fields, load_plan


def order(plan: str) -> tuple[list[str], str]:
    """The rows of a device plan's table (its ``table``, else its steps in order) and its baseline step."""
    spec = load_plan(plan)
    names = spec.get("table") or [step["name"] for step in expand(spec, fields(spec, "", "", ""))]
    return names, spec["baseline"]


HEADER = (
    "| step | student | teacher | KD | (a) each seed | (a) mean | (b) mean | (c) mean | student s |\n"
    "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def row(name: str, result: dict, scores: dict) -> tuple[str, float | None]:
    """The table row of one step, and its mean accuracy on (a)."""
    teachers = result.get("teachers", [])
    if len(teachers) > 1:
        teacher = f"ensemble of {len(teachers)} ({_pct(result.get('ensemble_test_accuracy'))})"
    else:
        teacher = f"1 ({_pct(teachers[0]['test_accuracy'])})" if teachers else "none"
    kd = result.get("student_kd", {})
    if kd.get("alpha", 0) == 0:
        term = "labels only"
    else:
        term = f"`{kd['loss']}`, T {kd['temperature']:g}" + (
            f", weight {kd['std_weight']:g}" if kd["loss"].endswith("_std") else ""
        )
        term += f", loss x {kd['loss_scale']:g}" if kd.get("loss_scale", 1) != 1 else ""
        term += "; transfer set " + (", ".join(Path(f).name for f in kd["unlabeled"]) or "none")
    student = f"`{result.get('student_recipe', '?')}`" + "".join(f" `{o}`" for o in result.get("student_set", []))
    runs = result.get("student_runs", [])
    a = [r["test_accuracy"] for r in runs]
    mine = [scores[key] for i in range(len(runs)) if (key := f"{name}/student_{i}") in scores]
    b, c = ([r[k] for r in mine if k in r] for k in ("b_bn_train", "c_bn_train"))
    seconds = result.get("student_train_seconds", {}).get("mean")
    cut = "" if result.get("complete") else " (cut off)"
    cells = [f"`{name}`{cut}", student, teacher, term, " / ".join(_pct(x) for x in a) or "-", _pct(_mean(a)),
             _pct(_mean(b)), _pct(_mean(c)), "-" if seconds is None else f"{seconds:.1f}"]  # fmt: skip
    return "| " + " | ".join(cells) + " |", _mean(a)


def table(out: Path, which: str) -> str:
    scores_file = out / "scores.json"
    scores = json.loads(scores_file.read_text())["rows"] if scores_file.is_file() else {}
    lines, means = [HEADER], {}
    names, base = order(which)
    for name in names:
        path = out / f"{name}.json"
        if not path.is_file():
            lines.append(f"| `{name}` | not run (see skipped.txt / failed.txt) |  |  |  |  |  |  |  |")
            continue
        line, means[name] = row(name, json.loads(path.read_text()), scores)
        lines.append(line)
    device = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else ""
    commit = (out / "commit.txt").read_text().strip() if (out / "commit.txt").is_file() else "?"
    text = [f"{which}: on {device or 'a CPU'}, commit {commit}", "", *lines]
    if means.get(base) is not None:
        text += ["", f"Each row's (a) mean against `{base}`'s (a few tenths are noise):"]
        text += [f"- `{k}`: {100 * (v - means[base]):+.2f} points" for k, v in means.items() if k != base and v]
    if not scores:
        text += ["", "No scores.json: the (b) and (c) columns are empty (this plan does not score, or scoring failed)."]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        sys.exit(
            "usage: python -m bench.steps_table OUT_DIR PLAN (a device plan of bench/plans/ with a baseline: losses, ...)"
        )
    out = Path(args[0])
    text = table(out, args[1])
    (out / f"{args[1]}.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
