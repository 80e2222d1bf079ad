"""Issue 27's check of distill-inspect: three test pickles made from the CIFAR-10 test set, told apart.

    python -m bench.inspect_sets --data-dir DIR --out OUT [--run RUN]

Writes ``OUT/<name>.pkl`` (the Kaggle layout: a dict with ``data`` (N, 32, 32, 3) uint8 and ``ids``) for
(a) ``copy``, the test set itself; (b) ``corrupted``, transfer_table's seeded shifted copy (one of the 12
corruptions at one of 5 severities per image); (c) ``recoloured``, a paler, warmer, lower-contrast copy
downscaled to 20x20 and back. Then runs distill-inspect on each into ``OUT/<name>/``, timing it, and prints
each reading and the seconds.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.transfer_table import make_sets
from distill.data import load_cifar10
from distill.errors import cli_main
from distill.files import write_json
from distill.inspection import inspect_set


def recoloured(images: np.ndarray) -> np.ndarray:
    """Paler (halfway to grey), then warmer (R x1.15, B x0.8), lower contrast (x0.8 about the mean), and rescaled
    (bilinear down to 20x20 and back up to 32x32)."""
    x = torch.from_numpy(images).float().permute(0, 3, 1, 2)  # (N, 3, 32, 32)
    grey = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
    x = (0.5 * x + 0.5 * grey) * torch.tensor([1.15, 1.0, 0.8])[None, :, None, None]
    x = x.mean((1, 2, 3), keepdim=True) + 0.8 * (x - x.mean((1, 2, 3), keepdim=True))
    x = F.interpolate(F.interpolate(x, size=20, mode="bilinear", antialias=True), size=32, mode="bilinear")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--run", help="a finished run: inspect with --run as well")
    args = parser.parse_args(argv)
    out = Path(args.out)
    sets = make_sets(args.data_dir, out / "sets")
    _, test = load_cifar10(args.data_dir, download=False)
    pixels = {"copy": test.images, "corrupted": np.load(sets["b"]), "recoloured": recoloured(test.images)}
    results = {}
    for name, data in pixels.items():
        pkl = out / f"{name}.pkl"
        with open(pkl, "wb") as f:
            pickle.dump({"data": data, "ids": np.arange(len(data))}, f, protocol=pickle.HIGHEST_PROTOCOL)
        start = time.perf_counter()
        result = inspect_set(pkl, out / name, args.run, args.data_dir)
        results[name] = {"seconds": round(time.perf_counter() - start, 1), "reading": result["reading"]}
        print(f"== {name}: {results[name]['seconds']} s")
    write_json(out / "inspect_sets.json", results)
    return results


if __name__ == "__main__":
    cli_main(main)
