"""Results people would rather look at: curves, a table, confusion matrices, errors, agreement.

    python distill/report.py runs/teacher runs/ce runs/kd_t4 --out reports/main [--data-dir DIR]

Writes into ``--out``: ``curves.png`` (training loss and accuracy per epoch, and per-epoch test accuracy
where runs evaluated it, every run on shared axes), ``confusion_<run>.png`` and ``errors_<run>.png`` (a grid
of misclassified test images with predicted and true labels) for each student, and ``report.md`` with the
table (run, recipe, params, final test accuracy, epochs, wall time, img/s), per-class accuracy and
teacher-student agreement.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from distill.augment import TTASpec  # noqa: E402
from distill.compute import Compute  # noqa: E402
from distill.data import CLASSES, Split, load_cifar10  # noqa: E402
from distill.engine import predict  # noqa: E402
from distill.errors import UserError, cli_main  # noqa: E402
from distill.files import check_distinct, check_writable, staged_directory, write_atomic, write_json  # noqa: E402
from distill.runs import ROUND, load_run, stored_test_predictions  # noqa: E402
from distill.shift import family_means, load_natural, plot_shift, score_shift, shift_markdown  # noqa: E402


@dataclass
class Run:
    path: Path
    name: str
    summary: dict
    metrics: list[dict]

    @property
    def role(self) -> str:
        return self.summary.get("role", "student")

    @property
    def round(self) -> dict | None:
        """The run's ``round.json`` (a round of ``distill-run --rounds``), or None."""
        path = self.path / ROUND
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def trained_on_test(self) -> bool:
        return bool(self.summary.get("trained_on_test"))

    @property
    def accuracy_cell(self) -> str:
        """The final test accuracy, or what stands in for it when the run trained on the test split."""
        if self.trained_on_test:
            return f"none: trained on test (val {100 * self.summary['val_accuracy']:.2f}%)"
        return f"{100 * self.summary['test_accuracy']:.2f}%"

    @classmethod
    def read(cls, path: str | Path) -> "Run":
        path = Path(path)
        summary_file, metrics_file = path / "summary.json", path / "metrics.jsonl"
        if not summary_file.is_file() or not metrics_file.is_file():
            raise UserError(f"{path} is not a finished run (needs summary.json and metrics.jsonl)")
        metrics = [json.loads(ln) for ln in metrics_file.read_text().splitlines() if ln.strip()]
        return cls(path, path.name, json.loads(summary_file.read_text()), metrics)


def evaluated_epochs(run: Run) -> list[tuple[int, float]]:
    """The (epoch, accuracy %) pairs a run evaluated (held-out split where it has one, else test), no TTA."""
    key = "val_acc" if any(m.get("val_acc") is not None for m in run.metrics) else "test_acc"
    return [(m["epoch"], 100 * m[key]) for m in run.metrics if m.get(key) is not None]


def plot_curves(runs: list[Run], out: Path, name: str = "curves.png") -> list[str]:
    """What every run measured each epoch: training loss and training accuracy (on its augmented views), and
    the per-epoch held-out or test accuracy where some run evaluated at two epochs or more (a panel of one
    final dot per run would say nothing: the table has those). Returns the panels drawn."""
    curves = any(len(evaluated_epochs(run)) >= 2 for run in runs)
    panels = ["loss", "train_acc"] + (["eval_acc"] if curves else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), constrained_layout=True)
    for run in runs:
        epochs = [m["epoch"] for m in run.metrics]
        label = f"{run.name} ({run.summary['model']})"
        axes[0].plot(epochs, [m["train_loss"] for m in run.metrics], marker="o", ms=3, label=label)
        axes[1].plot(epochs, [100 * m["train_acc"] for m in run.metrics], marker="o", ms=3, label=label)
        if curves and (tested := evaluated_epochs(run)):
            axes[2].plot(*zip(*tested), marker="o", ms=3, label=label)
    axes[0].set(title="Training loss (KD runs: their KD + CE objective)", xlabel="epoch", ylabel="loss")
    axes[1].set(title="Training accuracy (augmented views, labelled images)", xlabel="epoch", ylabel="accuracy (%)")
    if curves:
        axes[2].set(title="Accuracy per epoch (no TTA; held-out split where set, else test)", xlabel="epoch",
                    ylabel="accuracy (%)")  # fmt: skip
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return panels


# Published speed runs to compare against: (label, seconds, accuracy). The H100 number is issue 10's
# measurement; the A100 ones are the headers of airbench94.py and airbench96.py (mean of n runs).
AIRBENCH_ANCHORS = [
    ("airbench94, A100 (n=1000)", 3.83, 0.9401),
    ("airbench96, A100 (n=200)", 46.3, 0.9605),
    ("airbench96, our H100 (issue 10)", 16.7, 0.9597),
]


def plot_frontier(bench_results: list[dict], path: Path) -> Path:
    """Test accuracy against training seconds: every teacher, ensemble and student of the bench JSONs,
    with the airbench anchors. Students show the mean (and std) of their runs, named by ``label`` if set."""
    fig, ax = plt.subplots(figsize=(9, 6), constrained_layout=True)
    for r in bench_results:
        fresh = [teacher for teacher in r.get("teachers", []) if not teacher.get("reused")]
        for teacher in fresh:
            point = (teacher["train_seconds"], 100 * teacher["test_accuracy"])
            ax.scatter(*point, marker="s", color="tab:blue", alpha=0.7)
            ax.annotate(f"{teacher['recipe']} s{teacher['seed']}", point, fontsize=7)
        if "ensemble_test_accuracy" in r and fresh:
            x, y = sum(teacher["train_seconds"] for teacher in fresh), 100 * r["ensemble_test_accuracy"]
            ax.scatter(x, y, marker="*", s=140, color="tab:blue")
            ax.annotate(f"ensemble of {len(fresh)}", (x, y), fontsize=7)
        s, a = r["student_train_seconds"], r["student_test_accuracy"]
        ax.errorbar(s["mean"], 100 * a["mean"], yerr=100 * a["std"], fmt="o", color="tab:orange", capsize=3)
        ax.annotate(r.get("label", r["student_recipe"]), (s["mean"], 100 * a["mean"]), fontsize=8)
    for label, seconds, accuracy in AIRBENCH_ANCHORS:
        ax.scatter(seconds, 100 * accuracy, marker="D", color="grey")
        ax.annotate(label, (seconds, 100 * accuracy), fontsize=7, color="grey")
    device = bench_results[0].get("device", "?") if bench_results else "?"
    ax.set(xscale="log", xlabel="training seconds (log)", ylabel="test accuracy (%)",
           title=f"Accuracy per GPU-second on {device}: teachers (squares), students (circles), airbench (grey)")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 6), constrained_layout=True)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    # cells as vector patches (pcolormesh, not imshow): a PDF of it stays vector, as the paper wants
    edges = np.arange(len(cm) + 1) - 0.5
    im = ax.pcolormesh(edges, edges, norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(edges[-1], edges[0])  # row 0 at the top, as a matrix reads
    ax.set_aspect("equal")
    for i in range(len(cm)):
        for j in range(len(cm)):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(10), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(10), CLASSES)
    ax.set(title=title, xlabel="predicted class", ylabel="true class")
    fig.colorbar(im, ax=ax, label="fraction of the true class").solids.set_rasterized(False)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_errors(images: np.ndarray, pred: np.ndarray, true: np.ndarray, title: str, path: Path, n: int = 24) -> Path:
    wrong = np.flatnonzero(pred != true)[:n]
    cols = 8
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.75), constrained_layout=True, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i], interpolation="nearest")
        ax.set_title(f"pred {CLASSES[pred[i]]}\ntrue {CLASSES[true[i]]}", fontsize=7)
    fig.suptitle(title if len(wrong) else f"{title}: no errors", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def predictions(run: Run, test: Split) -> np.ndarray:
    """``run``'s class for each test image: those its final evaluation wrote, when they are of these images with
    these weights and its TTA (:func:`~distill.runs.stored_test_predictions`), else predicted as the submission
    would be."""
    recipe, model = load_run(run.path)
    if (stored := stored_test_predictions(run.path, run.summary, test, recipe.tta.to_dict())) is not None:
        return stored
    return predict(
        model,
        test.images,
        recipe.tta,
        what=f"predicting with {run.name}",
        compute=Compute.resolve(recipe.train.mixed_precision),
    )


def shift_comparison(compared: list[tuple[Run, str, dict]], images: int) -> list[str]:
    """One row per student: its augmentation, final test accuracy, and clean / per-family / mean
    corruption accuracy on the report's test images (no TTA), the drop and each natural-shift set."""
    families = list(family_means(compared[0][2]))
    natural = list(compared[0][2]["natural"])
    lines = [
        "## Under shift",
        "",
        f"Accuracy without TTA on the first {images:,} test images, clean and corrupted (mean over each family's"
        " corruptions and 5 severities); final test accuracy as each run reported it.",
        "",
        "| " + " | ".join(["run", "augmentation", "final test accuracy", "clean", *families, "mean corruption", "drop",
                           *natural]) + " |",
        "| --- | --- |" + " ---: |" * (len(families) + 4 + len(natural)),
    ]  # fmt: skip
    for run, augment, shift in compared:
        by_family = family_means(shift)
        cells = [run.accuracy_cell, f"{100 * shift['clean']:.2f}%"]
        cells += [f"{100 * by_family[f]:.2f}%" for f in families]
        cells += [f"**{100 * shift['mean_corruption_accuracy']:.2f}%**", f"{100 * shift['drop']:.2f} pts"]
        cells += [f"{100 * shift['natural'][name]:.2f}%" for name in natural]
        lines.append(f"| {run.name} | {augment} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def make_report(
    run_dirs: list[str | Path],
    out: str | Path,
    data_dir: str | None = None,
    suite: str = "tta",
    natural: list[str] | None = None,
    images: int | None = None,
) -> Path:
    """Write the plots and ``report.md`` for ``run_dirs`` into ``out``; returns the report's path.

    With ``suite="shift"`` each student also gets the shift suite of :mod:`distill.shift` (its table,
    ``shift_<run>.png`` and ``shift_<run>.json``), on the natural-shift files given as well, and the
    report opens with one row per student: augmentation, clean and mean accuracy per corruption family.
    ``images`` keeps the first N test images (the table's final test accuracy stays each run's own)."""
    runs = [Run.read(p) for p in run_dirs]
    if not runs:
        raise UserError("give at least one run directory")
    if images is not None and images < 1:
        raise UserError(f"--images {images}: give a count of 1 or more")
    scored = {run.summary.get("test_images") for run in runs}
    if len(scored) > 1:
        counts = " and ".join(f"{run.name} {run.summary.get('test_images') or 0:,}" for run in runs)
        raise UserError(
            f"the runs were scored on different test sets ({counts} images): one report compares runs of one test set; "
            f"report them apart"
        )
    final = check_report_out(Path(out))
    check_distinct(final, [run.path for run in runs], "--out")
    recipe, _ = load_run(runs[0].path)
    sets = load_natural(natural or []) if suite == "shift" else {}  # checked before any work
    _, test = load_cifar10(data_dir or recipe.data.dir, download=False)
    test = test.head(recipe.data.test_limit).head(images)
    with staged_directory(final, "report.swap") as out:  # built aside, then swapped in whole
        _write(runs, out, test, suite, sets)
    report = final / "report.md"
    print(f"wrote {report} and {len(list(final.glob('*.png')))} plots")
    return report


def check_report_out(out: Path) -> Path:
    """``--out`` must be a new directory or an earlier report's (replaced whole), in a writable folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give the directory the report should go into")
    if out.is_dir() and any(out.iterdir()) and not (out / "report.md").is_file():
        raise UserError(f"--out {out} holds other files (no report.md); give a new directory or an earlier report's")
    check_writable(out.parent, flag="--out")
    return out


def _write(runs: list[Run], out: Path, test, suite: str, sets: dict) -> None:
    """The plots and report.md of ``runs`` into the (staging) directory ``out``."""
    lines = [
        "# Results",
        "",
        "![training curves](curves.png)",
        "",
        "| run | recipe | role | params | final test accuracy | epochs | wall time (s) | img/s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    plot_curves(runs, out)
    for run in runs:
        s = run.summary
        ips = statistics.median(m["img_per_s"] for m in run.metrics)
        lines.append(
            f"| {run.name} | {s['recipe']['name']} | {run.role} | {s['trainable_params']:,} | "
            f"{run.accuracy_cell} | {s['epochs']} | {s['wall_seconds']:.1f} | {ips:,.0f} |"
        )
    lines += [
        "",
        f"Device: {runs[0].summary['device']}. Accuracy on {len(test):,} test images"
        f" with TTA: {TTASpec(**runs[0].summary['tta']).label}.",
        "",
    ]

    compare_at = len(lines)  # the shift comparison goes here, once every student is scored
    compared: list[tuple[Run, str, dict]] = []
    preds = {run.name: predictions(run, test) for run in runs}
    teachers = [r for r in runs if r.role == "teacher"]
    for run in (r for r in runs if r.role == "student"):
        if run.trained_on_test:
            lines += [
                f"## {run.name}",
                "",
                f"Final validation accuracy: {100 * run.summary['val_accuracy']:.2f}% "
                f"({run.summary['val_images']:,} held-out images)  ",
                f"Trainable parameters: {run.summary['trainable_params']}",
                "",
                "This run trained on the CIFAR-10 test split (`data.train_on_test=true`), so it has no test accuracy,"
                " and its confusion matrix, errors and shift suite on test images would be inflated: they are left out.",
                "",
            ]
            continue
        pred = preds[run.name]
        cm = np.zeros((10, 10), dtype=np.int64)
        np.add.at(cm, (test.labels, pred), 1)
        plot_confusion(
            cm, f"{run.name}: confusion matrix ({len(test):,} test images)", out / f"confusion_{run.name}.png"
        )
        plot_errors(
            test.images, pred, test.labels, f"{run.name}: misclassified test images", out / f"errors_{run.name}.png"
        )
        per_class = cm.diagonal() / np.maximum(cm.sum(1), 1)
        lines += [
            f"## {run.name}",
            "",
            f"Final test accuracy: {100 * run.summary['test_accuracy']:.2f}%  ",
            f"Trainable parameters: {run.summary['trainable_params']}",
            "",
        ]
        if (record := run.round) is not None:
            taught = " + ".join(Path(t["run_dir"]).name for t in record["taught_by"])
            lines += [
                f"Round {record['round']} of self-training (`distill-run --rounds`): taught by {taught}; it changed "
                f"{record['changed']:,} of their {record['count']:,} predictions on the {record['images']} images "
                f"(agreement {100 * record['agreement']:.2f}%).",
                "",
            ]
        for teacher in teachers:
            agree = float(np.mean(preds[teacher.name] == pred))
            lines.append(
                f"Agreement with teacher {teacher.name}: {100 * agree:.2f}% of test images get the same class."
            )
            lines.append("")
        lines += [
            "| class | " + " | ".join(CLASSES) + " |",
            "| --- |" + " ---: |" * 10,
            "| accuracy | " + " | ".join(f"{100 * a:.1f}%" for a in per_class) + " |",
            "",
            f"![confusion matrix](confusion_{run.name}.png)",
            "",
            f"![misclassified](errors_{run.name}.png)",
            "",
        ]
        if suite == "shift":
            run_recipe, model = load_run(run.path)
            shift = score_shift(model, test, None, sets, compute=Compute.resolve(run_recipe.train.mixed_precision))
            compared.append((run, run_recipe.augment.label, shift))
            write_json(out / f"shift_{run.name}.json", shift)
            plot_shift(shift, out / f"shift_{run.name}.png", f"{run.name} under shift (no TTA)")
            lines += [
                f"### {run.name} under shift (no TTA)",
                "",
                shift_markdown(shift),
                f"![shift](shift_{run.name}.png)",
                "",
            ]
    lines[compare_at:compare_at] = shift_comparison(compared, len(test)) if compared else []
    write_atomic(out / "report.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Plots and a markdown report of finished runs.")
    parser.add_argument("runs", nargs="+", help="run directories (teacher and students)")
    parser.add_argument("--out", required=True, help="report directory")
    parser.add_argument("--data-dir", help="holds cifar-10-batches-py/ (default: the first run's data.dir)")
    parser.add_argument(
        "--suite", choices=("tta", "shift"), default="tta", help="shift: add each student's shift suite"
    )
    parser.add_argument("--natural", action="append", help="with --suite shift: a CIFAR-10.1 / 10.2 file (repeatable)")
    parser.add_argument("--images", type=int, help="score the first N test images only")
    args = parser.parse_args(argv)
    return make_report(args.runs, args.out, args.data_dir, args.suite, args.natural, args.images)


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
