"""How a finished run holds up under shift: the CIFAR-10 test set, its corruptions, and natural-shift sets.

The competition scores a held-out set of CIFAR-10-like images "from a different source", on which
teams report 85-89% against 95-97% on CIFAR-10 itself. This suite estimates that drop from three
sources: the clean test set, the 12 corruptions x 5 severities of :mod:`distill.corruptions` (mean
corruption accuracy, and its drop from clean), and CIFAR-10.1 / CIFAR-10.2 when the user has them.
Every set is scored by the same weights with the same test-time augmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from distill.augment import TTASpec
from distill.compute import Compute
from distill.corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, corrupt
from distill.data import Split, load_shift_set
from distill.engine import predict


def score_shift(
    model: torch.nn.Module,
    test: Split,
    tta: TTASpec | None = None,
    natural: dict[str, Split] | None = None,
    seed: int = 0,
    corruptions: tuple[str, ...] = CORRUPTIONS,
    compute: Compute | None = None,
    bn_stats: str = "train",
) -> dict:
    """Accuracy on the clean test set, each corruption and severity, and each natural-shift set
    (``{name: split}``, see :func:`load_natural`), as ``compute`` says (the run's ``train.mixed_precision``).
    With ``bn_stats="test"`` each set is predicted with BatchNorm statistics of its own images."""
    compute = compute or Compute.resolve()

    def accuracy(images: np.ndarray, labels: np.ndarray, what: str) -> float:
        return float((predict(model, images, tta, what=what, compute=compute, bn_stats=bn_stats) == labels).mean())

    result = {"tta": (tta or TTASpec()).to_dict(), "images": len(test), "seed": seed, "bn_stats": bn_stats}
    result["clean"] = accuracy(test.images, test.labels, "clean test set")
    images = torch.from_numpy(test.images).to(compute.device)
    result["corruptions"] = {
        name: {
            str(s): accuracy(corrupt(images, name, s, seed).cpu().numpy(), test.labels, f"{name} severity {s}")
            for s in SEVERITIES
        }
        for name in corruptions
    }
    per_set = [a for sev in result["corruptions"].values() for a in sev.values()]
    result["mean_corruption_accuracy"] = float(np.mean(per_set))
    result["drop"] = result["clean"] - result["mean_corruption_accuracy"]
    result["natural"] = {name: accuracy(s.images, s.labels, name) for name, s in (natural or {}).items()}
    return result


def family_means(result: dict) -> dict[str, float]:
    """Mean accuracy over each family's corruptions and severities (noise, blur, weather, digital)."""
    scored = result["corruptions"]
    return {
        family: float(np.mean([a for name in names if name in scored for a in scored[name].values()]))
        for family, names in FAMILIES.items()
        if any(name in scored for name in names)
    }


def load_natural(paths: list[str | Path]) -> dict[str, Split]:
    """Natural-shift sets by file name, each checked (:func:`~distill.data.load_shift_set`)."""
    return {Path(p).name: load_shift_set(p) for p in paths}


def shift_table(result: dict, title: str) -> Table:
    """Rows: each corruption by severity, and its mean; then the summary lines."""
    table = Table(title=title)
    table.add_column("set")
    for s in SEVERITIES:
        table.add_column(f"sev {s}", justify="right")
    table.add_column("mean", justify="right")
    for name, by_severity in result["corruptions"].items():
        values = list(by_severity.values())
        table.add_row(name, *(f"{v:.2%}" for v in values), f"{np.mean(values):.2%}")
    table.add_row("clean test set", *[""] * len(SEVERITIES), f"{result['clean']:.2%}")
    table.add_row(
        "mean corruption accuracy", *[""] * len(SEVERITIES),
        f"{result['mean_corruption_accuracy']:.2%} (drop {100 * result['drop']:.2f} pts)",
    )  # fmt: skip
    for name, value in result["natural"].items():
        table.add_row(name, *[""] * len(SEVERITIES), f"{value:.2%} (drop {100 * (result['clean'] - value):.2f} pts)")
    return table


def shift_markdown(result: dict) -> str:
    """The same table, as markdown for report.md and BENCHMARKS.md."""
    head = "| set | " + " | ".join(f"severity {s}" for s in SEVERITIES) + " | mean |"
    lines = [head, "| --- |" + " ---: |" * (len(SEVERITIES) + 1)]
    for name, by_severity in result["corruptions"].items():
        values = list(by_severity.values())
        lines.append(f"| {name} | " + " | ".join(f"{v:.2%}" for v in values) + f" | {np.mean(values):.2%} |")
    blank = " |" * len(SEVERITIES)
    lines.append(f"| clean test set |{blank} {result['clean']:.2%} |")
    lines.append(
        f"| mean corruption accuracy |{blank} {result['mean_corruption_accuracy']:.2%} "
        f"(drop {100 * result['drop']:.2f} pts) |"
    )
    for name, value in result["natural"].items():
        lines.append(f"| {name} |{blank} {value:.2%} (drop {100 * (result['clean'] - value):.2f} pts) |")
    return "\n".join(lines) + "\n"


def plot_shift(result: dict, path: Path, title: str) -> Path:
    """Accuracy against severity, one line per corruption, with the clean accuracy and the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One colour per family, one line style and marker per member: twelve lines stay tellable apart.
    colours = dict(zip(FAMILIES, ("tab:red", "tab:blue", "tab:green", "tab:purple")))
    style = {
        name: (colours[family], ("-", "--", ":", "-.")[i], "osd^"[i])
        for family, names in FAMILIES.items()
        for i, name in enumerate(names)
    }
    fig, ax = plt.subplots(figsize=(10, 5.5), constrained_layout=True)
    for name, by_severity in result["corruptions"].items():
        colour, ls, marker = style.get(name, ("grey", "-", "o"))
        values = [100 * v for v in by_severity.values()]
        ax.plot(SEVERITIES, values, color=colour, ls=ls, marker=marker, ms=4, label=name)
    mean = [np.mean([sev[str(s)] for sev in result["corruptions"].values()]) * 100 for s in SEVERITIES]
    ax.plot(SEVERITIES, mean, color="black", lw=2.5, label="mean")
    ax.axhline(100 * result["clean"], color="black", ls="--", lw=1, label="clean")
    for name, value in result["natural"].items():
        ax.axhline(100 * value, ls=":", lw=1.5, label=name)
    ax.set(xlabel="severity", ylabel="accuracy (%)", xticks=SEVERITIES, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
