"""Paired probe: a finished run's test accuracy, with its own BatchNorm statistics and with statistics re-estimated
on un-augmented training images (a cumulative average over the first N of a seeded permutation), each without TTA
and with the run's recipe TTA. Prints one JSON line per run and writes them all to --out.

It repeats the eighth session's screen, bench/results/cpu-bnstats-2026-12-05/bn_screen.py (bf16, its TTA written out
by hand), which was found only after this ran; this one scores through ``distill.engine.predict`` instead. Run that
one or this one, not a third.

    python bench/results/cpu-fp32-seeds-2026-12-05/bnprobe.py RUN [RUN ...] [--data-dir /tmp/c10] [--out bnprobe.json]
"""

import argparse
import json
import time

import numpy as np
import torch

from distill.compute import Compute
from distill.data import load_cifar10
from distill.engine import batchnorm_from, predict
from distill.runs import load_run


def probe(run: str, train, test) -> dict[str, float]:
    recipe, model = load_run(run)
    compute = Compute.resolve(recipe.train.mixed_precision)
    ttas = (("none", None), ("recipe", recipe.tta))
    res = {f"own_{name}": float((predict(model, test.images, tta, compute=compute) == test.labels).mean())
           for name, tta in ttas}  # fmt: skip
    for n in (10000, 50000):
        idx = np.random.default_rng(0).permutation(len(train.images))[:n]
        start = time.time()
        images = torch.from_numpy(np.ascontiguousarray(train.images[idx]))
        adapted = batchnorm_from(model.to(compute.device), images, 500, compute)
        res[f"bn_s_{n}"] = time.time() - start
        for name, tta in ttas:
            res[f"train{n}_{name}"] = float((predict(adapted, test.images, tta, compute=compute) == test.labels).mean())
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data-dir", default="/tmp/c10")
    parser.add_argument("--out", default="bnprobe.json")
    args = parser.parse_args()
    train, test = load_cifar10(args.data_dir, download=False)
    out = {}
    for run in args.runs:
        out[run] = probe(run, train, test)
        print(run, json.dumps(out[run]), flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
