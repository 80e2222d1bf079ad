"""Issue 25's table from what ``bench/run_losses_h100.sh`` wrote: ``python bench/losses_table.py OUT_DIR``.

One row per step: its teachers (one, or an ensemble of N with the ensemble's accuracy), the student's ``kd.loss``,
T and transfer set (read from the step's bench JSON, not assumed), each seed's accuracy on (a) the CIFAR-10 test
set with the recipe's TTA and their mean, the mean on (b) the seeded corrupted copy (``OUT_DIR/scores.json``),
and the student's training seconds. A step that did not run is listed as such. Writes ``OUT_DIR/losses.md``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ORDER = ["kl", "kl_std", "dkd", "dkd_std", "dist", "kl_T4", "kl_std_w1", "ens2", "ens3",
         "t_kl", "t_kl_std", "t_dkd", "t_dkd_std", "t_dist", "t_ens3"]  # fmt: skip
HEADER = (
    "| step | teacher | kd.loss | T | transfer set | (a) each seed | (a) mean | (b) mean | student s |\n"
    "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"
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
    loss = kd.get("loss", "?") + (f", weight {kd['std_weight']:g}" if kd.get("loss", "").endswith("_std") else "")
    transfer = ", ".join(Path(f).name for f in kd.get("unlabeled", [])) or "none"
    runs = result.get("student_runs", [])
    a = [r["test_accuracy"] for r in runs]
    b = [scores[key]["b_bn_train"] for i in range(len(runs)) if (key := f"{name}/student_{i}") in scores]
    seconds = result.get("student_train_seconds", {}).get("mean")
    cut = "" if result.get("complete") else " (cut off)"
    cells = [f"`{name}`{cut}", teacher, f"`{loss}`", f"{kd.get('temperature', 0):g}", transfer,
             " / ".join(_pct(x) for x in a) or "-", _pct(_mean(a)), _pct(_mean(b)),
             "-" if seconds is None else f"{seconds:.1f}"]  # fmt: skip
    return "| " + " | ".join(cells) + " |", _mean(a)


def table(out: Path) -> str:
    scores_file = out / "scores.json"
    scores = json.loads(scores_file.read_text())["rows"] if scores_file.is_file() else {}
    lines, means = [HEADER], {}
    for name in ORDER:
        path = out / f"{name}.json"
        if not path.is_file():
            lines.append(f"| `{name}` | not run (see skipped.txt / failed.txt) |  |  |  |  |  |  |  |")
            continue
        line, means[name] = row(name, json.loads(path.read_text()), scores)
        lines.append(line)
    device = (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").is_file() else "?"
    commit = (out / "commit.txt").read_text().strip() if (out / "commit.txt").is_file() else "?"
    text = [f"kd_fast94's student from teacher_94 train.label_smoothing=0, on {device or 'a CPU'}, commit {commit}", ""]
    text += lines
    single = {k: v for k, v in means.items() if k in ORDER[:7] and v is not None}
    if "kl" in single and len(single) > 1:
        best = max(single, key=single.get)
        text += ["", f"Best loss from one teacher without a transfer set: `{best}`, {100 * (single[best] - single['kl']):+.2f}"
                     " points over `kl` (two seeds' means; a few tenths are noise)."]  # fmt: skip
    if not scores:
        text += ["", "No scores.json: the (b) column is empty (scoring did not run or failed)."]
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> str:
    out = Path((argv if argv is not None else sys.argv[1:])[0])
    text = table(out)
    (out / "losses.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
