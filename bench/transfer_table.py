"""Issue 16's measurement: what a transfer set, a final fit and test-time BatchNorm buy on a held-out set.

    python bench/transfer_table.py sets --data-dir DIR --out SETS            # the two evaluation sets
    python bench/transfer_table.py score --data-dir DIR --sets SETS --json out.json NAME=RUN_DIR ...

``sets`` writes two sets whose labels no student sees, each as a transfer-set file (``.npy``, unlabelled)
and its labels: (a) ``cifar10_test.npy``, the CIFAR-10 test set; (b) ``shifted_test.npy``, a shifted copy
of it: image i gets one of the 12 corruptions of :mod:`distill.corruptions` at one of its 5 severities,
uniformly at random (seed 0), the same on every machine. ``score`` predicts both sets with each run's
weights and recipe TTA, with the run's own BatchNorm statistics and with statistics of the set itself
(``--bn-stats test``), and prints and writes one row per run.
"""

from __future__ import annotations

import argparse
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
from distill.runs import git_commit, load_run

SETS = {"a": "cifar10_test", "b": "shifted_test"}


def make_sets(data_dir: str, out: Path, seed: int = 0) -> dict[str, Path]:
    """Write (a) the test set and (b) its shifted copy, each ``<name>.npy`` + ``<name>_labels.npy``."""
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
    for key, pixels in (("a", test.images), ("b", shifted)):
        np.save(out / f"{SETS[key]}.npy", pixels)
        np.save(out / f"{SETS[key]}_labels.npy", test.labels)
    np.savez(out / "shifted_mix.npz", corruption=which, severity=severity)
    print(f"wrote {out}: {', '.join(f'{SETS[k]}.npy' for k in SETS)} and their labels ({len(test):,} images each)")
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


def print_table(result: dict) -> None:
    table = Table(title="accuracy on (a) the CIFAR-10 test set and (b) its shifted copy, recipe TTA")
    for col in ("run", "(a)", "(a), BN of the set", "(b)", "(b), BN of the set"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for label, r in result["rows"].items():
        keys = ("a_bn_train", "a_bn_test", "b_bn_train", "b_bn_test")
        table.add_row(label, *(f"{r[k]:.2%}" if k in r else "-" for k in keys))
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="The transfer-set measurement's evaluation sets and scores.")
    sub = parser.add_subparsers(dest="what", required=True)
    make = sub.add_parser("sets", help="write the two evaluation sets")
    make.add_argument("--data-dir", required=True)
    make.add_argument("--out", required=True, type=Path)
    make.add_argument("--seed", type=int, default=0)
    scoring = sub.add_parser("score", help="score finished runs on both sets")
    scoring.add_argument("--sets", required=True, type=Path, help="the folder `sets` wrote")
    scoring.add_argument("--json", type=Path)
    scoring.add_argument("--bn-stats", choices=("train", "test", "both"), default="both",
                         help="the runs' own BatchNorm statistics, each set's, or both (default)")  # fmt: skip
    scoring.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    args = parser.parse_args(argv)
    if args.what == "sets":
        return {k: str(v) for k, v in make_sets(args.data_dir, args.out, args.seed).items()}
    runs = {}
    for item in args.runs:
        name, sep, path = item.partition("=")
        if not sep:
            raise UserError(f"{item!r}: give NAME=RUN_DIR")
        runs[name] = Path(path)
    result = score(runs, args.sets, ("train", "test") if args.bn_stats == "both" else (args.bn_stats,))
    print_table(result)
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    cli_main(main)
