"""Issue 16's measurement: what a transfer set, a final fit and test-time BatchNorm buy on a held-out set.

    python bench/transfer_table.py sets --data-dir DIR --out SETS            # the two evaluation sets
    python bench/transfer_table.py score --data-dir DIR --sets SETS --json out.json NAME=RUN_DIR ...

``sets`` writes three sets whose labels no student sees, each as a transfer-set file (``.npy``, unlabelled), as a
test pickle laid out as the contest's (``.pkl``, for ``distill-run --test-pkl``) and its labels: (a) ``cifar10_test.npy``, the CIFAR-10 test set; (b) ``shifted_test.npy``, a shifted copy
of it: image i gets one of the 12 corruptions of :mod:`distill.corruptions` at one of its 5 severities,
uniformly at random (seed 0), the same on every machine; (c) ``reframed_test.npy``, a shift of another kind,
no corruption: each image framed and coloured as another camera and photographer might (:func:`reframe`). ``score`` predicts both sets with each run's
weights and recipe TTA, with the run's own BatchNorm statistics and with statistics of the set itself
(``--bn-stats test``), and prints and writes one row per run.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from distill.compute import Compute
from distill.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from distill.data import load_cifar10
from distill.engine import predict
from distill.errors import UserError, cli_main
from distill.files import write_json
from distill.runs import ROUND, git_commit, load_run

SETS = {"a": "cifar10_test", "b": "shifted_test", "c": "reframed_test"}


def reframe(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each uint8 (N, 32, 32, 3) image closer in and recoloured, nothing lost or added: a crop of 50-80% of its
    area (aspect 3:4 to 4:3, anywhere) scaled back to 32 px (antialiased bilinear), saturation x 0.5-1.5, hue
    +-0.06 of a turn, gamma 0.7-1.4; drawn per image from ``seed``."""
    from torchvision.transforms.v2 import functional as F

    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    for i, image in enumerate(images):
        area, aspect = rng.uniform(0.5, 0.8) * 32 * 32, np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        h, w = (min(32, round(float(np.sqrt(area * r)))) for r in (1 / aspect, aspect))
        top, left = int(rng.integers(0, 32 - h + 1)), int(rng.integers(0, 32 - w + 1))
        x = torch.from_numpy(image).permute(2, 0, 1)
        x = F.resized_crop(x, top, left, h, w, [32, 32], antialias=True)
        x = F.adjust_saturation(x, float(rng.uniform(0.5, 1.5)))
        x = F.adjust_hue(x, float(rng.uniform(-0.06, 0.06)))
        x = F.adjust_gamma(x, float(rng.uniform(0.7, 1.4)))
        out[i] = x.permute(1, 2, 0).numpy()
    return out


def make_sets(data_dir: str, out: Path, seed: int = 0) -> dict[str, Path]:
    """Write (a) the test set, (b) its corrupted copy and (c) its reframed copy, each ``<name>.npy`` +
    ``<name>_labels.npy``."""
    _, test = load_cifar10(data_dir, download=False)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(CORRUPTIONS), len(test))
    severity = rng.integers(1, len(SEVERITIES) + 1, len(test))
    shifted = test.images.copy()
    images = torch.from_numpy(test.images)
    for c, name in enumerate(CORRUPTIONS):
        for s in SEVERITIES:
            picked = np.flatnonzero((which == c) & (severity == s))
            if len(picked):
                shifted[picked] = corrupt(images[picked], name, int(s), seed).numpy()
    out.mkdir(parents=True, exist_ok=True)
    for key, pixels in (("a", test.images), ("b", shifted), ("c", reframe(test.images, seed))):
        np.save(out / f"{SETS[key]}.npy", pixels)
        with (out / f"{SETS[key]}.pkl").open("wb") as f:  # the same images as the contest's test pickle is laid out
            pickle.dump({b"data": pixels, b"ids": np.arange(len(pixels))}, f)
        np.save(out / f"{SETS[key]}_labels.npy", test.labels)
    np.savez(out / "shifted_mix.npz", corruption=which, severity=severity)
    print(
        f"wrote {out}: {', '.join(f'{SETS[k]}.npy' for k in SETS)}, each also as a test pickle (.pkl), and their labels "
        f"({len(test):,} images each)"
    )
    return {key: out / f"{name}.npy" for key, name in SETS.items()}


def score(runs: dict[str, Path], sets_dir: Path, bn_stats: tuple[str, ...] = ("train", "test")) -> dict:
    """Accuracy of each run on each set, with its own and (by default) with the set's BatchNorm statistics."""
    sets = {}
    for key, name in SETS.items():
        if not (sets_dir / f"{name}.npy").is_file():
            raise UserError(
                f"{sets_dir / name}.npy is missing; write the sets with: transfer_table.py sets --out {sets_dir}"
            )
        sets[key] = (np.load(sets_dir / f"{name}.npy"), np.load(sets_dir / f"{name}_labels.npy"))
    rows = {}
    for label, run_dir in runs.items():
        recipe, model = load_run(run_dir)
        row = {"run": str(run_dir), "model": recipe.model.name, "tta": recipe.tta.label}
        for key, (images, labels) in sets.items():
            for bn in bn_stats:
                pred = predict(model, images, recipe.tta, what=f"{label} on {SETS[key]}, BN {bn}",
                               compute=Compute.resolve(recipe.train.mixed_precision), bn_stats=bn)  # fmt: skip
                row[f"{key}_bn_{bn}"] = float((pred == labels).mean())
        rows[label] = row
    return {"commit": git_commit(), "command": " ".join(["bench/transfer_table.py", *sys.argv[1:]]), "rows": rows}


def step_students(out: Path, work: Path) -> dict[str, Path]:
    """``STEP/student_K`` -> its run dir, for each step of a device plan that wrote ``OUT/STEP.json``."""
    return {
        f"{json_file.stem}/{run.name}": run
        for json_file in sorted(out.glob("*.json"))
        for run in sorted((work / json_file.stem).glob("student_[0-9]*"))
        if (run / "run.json").is_file()
    }


def print_table(result: dict) -> None:
    table = Table(
        title="accuracy on (a) the CIFAR-10 test set, (b) its corrupted and (c) its reframed copy, recipe TTA"
    )
    table.add_column("run")
    for key in SETS:
        table.add_column(f"({key})", justify="right")
        table.add_column(f"({key}), BN of the set", justify="right")
    for label, r in result["rows"].items():
        keys = [f"{key}_bn_{bn}" for key in SETS for bn in ("train", "test")]
        table.add_row(label, *(f"{r[k]:.2%}" if k in r else "-" for k in keys))
    Console().print(table)


def markdown(results: list[dict]) -> str:
    """One markdown row per scored run of ``results`` (``score``'s JSONs): each set with the run's and the set's
    BatchNorm statistics where scored, and, for a round of ``distill-run --rounds``, what its round changed."""
    keys = [f"{key}_bn_{bn}" for key in SETS for bn in ("train", "test")]
    used = [k for k in keys if any(k in r for res in results for r in res["rows"].values())]
    head = " | ".join(f"({k[0]}){', BN of the set' if k.endswith('test') else ''}" for k in used)
    lines = [f"| run | {head} | round: changed of its teachers' predictions |", "| --- |" + " ---: |" * (len(used) + 1)]
    for res in results:
        for label, r in res["rows"].items():
            record = Path(r["run"]) / ROUND
            changed = ""
            if record.is_file():
                rd = json.loads(record.read_text())
                changed = f"round {rd['round']}: {rd['changed']:,} of {rd['count']:,} ({100 * rd['changed'] / rd['count']:.2f}%)"
            cells = [f"{100 * r[k]:.2f}%" if k in r else "-" for k in used]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {changed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="The transfer-set measurement's evaluation sets and scores.")
    sub = parser.add_subparsers(dest="what", required=True)
    make = sub.add_parser("sets", help="write the three evaluation sets")
    make.add_argument("--data-dir", required=True)
    make.add_argument("--out", required=True, type=Path)
    make.add_argument("--seed", type=int, default=0)
    scoring = sub.add_parser("score", help="score finished runs on the three sets")
    scoring.add_argument("--sets", required=True, type=Path, help="the folder `sets` wrote")
    scoring.add_argument("--json", type=Path)
    scoring.add_argument("--bn-stats", choices=("train", "test", "both"), default="both",
                         help="the runs' own BatchNorm statistics, each set's, or both (default)")  # fmt: skip
    scoring.add_argument("--steps", nargs=2, type=Path, metavar=("OUT_DIR", "WORK_DIR"),
                         help="also every student of a device plan's steps (bench/device.py): STEP/student_K")  # fmt: skip
    scoring.add_argument("--runs-dir", action="append", type=Path, default=[],
                         help="also every finished run directly in this distill-run --runs-dir, as DIR/RUN")  # fmt: skip
    scoring.add_argument("runs", nargs="*", metavar="NAME=RUN_DIR")
    tabling = sub.add_parser("table", help="a markdown table of score's JSONs (with each round's changes)")
    tabling.add_argument("json", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.what == "table":
        text = markdown([json.loads(p.read_text()) for p in args.json])
        print(text, end="")
        return {"markdown": text}
    if args.what == "sets":
        return {k: str(v) for k, v in make_sets(args.data_dir, args.out, args.seed).items()}
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"{item!r}: give NAME=RUN_DIR")
        runs[name] = Path(path)
    if args.steps:
        runs |= step_students(*args.steps)
    for runs_dir in args.runs_dir:
        runs |= {f"{runs_dir.name}/{d.name}": d for d in sorted(runs_dir.iterdir()) if (d / "summary.json").is_file()}
    if not runs:
        raise UserError("no runs to score: give NAME=RUN_DIR, or --steps OUT_DIR WORK_DIR of a device plan")
    result = score(runs, args.sets, ("train", "test") if args.bn_stats == "both" else (args.bn_stats,))
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    cli_main(main)
