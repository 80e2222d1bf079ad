"""Stage 4: write the Kaggle submission CSV (``ID,Labels``) from a trained student and the test pickle.

    python distill/export.py --run runs/kd_t4 --test-pkl cifar_test_nolabel.pkl --out submission.csv

The pickle is read with a restricted unpickler (numpy arrays only). Predictions use the run's
weights from ``model.safetensors`` and the recipe's test-time augmentation (``tta``). The CSV is written to a
temporary file and renamed, then checked and summarised (rows, id range, label histogram).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from distill.compute import Compute
from distill.data import CLASSES, load_test_pickle
from distill.engine import BN_STATS, BN_STATS_HELP, predict
from distill.errors import UserError, cli_main
from distill.files import check_distinct, check_writable, write_atomic
from distill.models import check_param_cap
from distill.runs import load_run


def validate_csv(text: str, ids: np.ndarray) -> dict:
    """Re-read a written submission and check it: header, one row per id, labels in 0..9."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != ["ID", "Labels"]:
        raise UserError("submission header is not 'ID,Labels'")
    body = np.array([[int(a), int(b)] for a, b in rows[1:]], dtype=np.int64).reshape(-1, 2)
    if len(body) != len(ids) or not np.array_equal(np.sort(body[:, 0]), np.sort(ids)):
        raise UserError("submission rows do not match the test ids one to one")
    if body.size and (body[:, 1].min() < 0 or body[:, 1].max() > 9):
        raise UserError("submission labels outside 0..9")
    return {
        "rows": len(body),
        "id_min": int(body[:, 0].min()) if body.size else None,
        "id_max": int(body[:, 0].max()) if body.size else None,
        "histogram": np.bincount(body[:, 1], minlength=10).tolist(),
    }


def check_out(out: str | Path) -> Path:
    """The CSV path must be a file in an existing folder; checked before any work."""
    out = Path(out)
    if out.is_dir():
        raise UserError(
            f"--out {out} is a directory; give the path of the CSV file to write, e.g. {out / 'submission.csv'}"
        )
    if out.parent and not out.parent.exists():
        raise UserError(f"folder {out.parent} does not exist; create it or choose another --out")
    check_writable(out.parent, flag="--out")  # refused now, not after predicting (or training, under distill-run)
    return out


def export(run_dir: str | Path, test_pkl: str | Path, out: str | Path, bn_stats: str = "train") -> dict:
    """Predict the test pickle with the run's student and write ``out``; returns the CSV's check.

    ``bn_stats="test"`` re-estimates the BatchNorm statistics on the test pickle's images first (in memory;
    the run's weights on disk stay as they are)."""
    out = check_out(out)
    check_distinct(out, [Path(test_pkl), Path(run_dir)], "--out")
    images, ids = load_test_pickle(test_pkl)
    recipe, model = load_run(run_dir)
    check_param_cap(model, recipe.model.name)  # a submission must come from a student under the cap
    what = f"predicting {len(images):,} test images"
    labels = predict(
        model, images, recipe.tta, what=what, compute=Compute.resolve(recipe.train.mixed_precision), bn_stats=bn_stats
    )
    text = "ID,Labels\n" + "".join(f"{i},{y}\n" for i, y in zip(ids.tolist(), labels.tolist()))
    report = validate_csv(text, ids)
    write_atomic(out, text, flag="--out")
    print(f"wrote {out}: {report['rows']} rows, ids {report['id_min']}..{report['id_max']}")
    hist = "  ".join(f"{name} {n}" for name, n in zip(CLASSES, report["histogram"]))
    print(f"labels: {hist}")
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Write the Kaggle submission CSV from a student run.")
    parser.add_argument("--run", required=True, help="the student's run directory")
    parser.add_argument("--test-pkl", required=True, help="the competition's test pickle (cifar_test_nolabel.pkl)")
    parser.add_argument("--out", default="submission.csv", help="CSV path to write")
    parser.add_argument("--bn-stats", choices=BN_STATS, default="train", help=BN_STATS_HELP)
    args = parser.parse_args(argv)
    return export(args.run, args.test_pkl, args.out, args.bn_stats)


def cli() -> None:
    """The console script (see pyproject.toml): ``main`` with one-line errors and their exit codes."""
    cli_main(main)


if __name__ == "__main__":
    cli()
