"""Time prediction on this machine: wall, user and system seconds and page faults, by batch size and layout.

    python bench/predict_speed.py --run runs/kd_fast94 --data-dir DIR [--images 2000] [--batch 256] [--layout cl]

Predicts the first ``--images`` test images with the run's recipe TTA through ``engine.predict_logits``
(what ``export.py`` and ``evaluate.py`` use), in ``--layout`` ``nchw`` or ``cl`` (channels-last) memory.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from distill.data import load_cifar10
from distill.engine import predict_logits
from distill.errors import cli_main
from distill.runs import load_run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--layout", choices=("nchw", "cl"), default="cl")
    args = parser.parse_args(argv)
    recipe, model = load_run(args.run)
    images = torch.from_numpy(load_cifar10(args.data_dir, download=False)[1].images[: args.images])
    cl = args.layout == "cl"
    model = model.to(memory_format=torch.channels_last) if cl else model
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    predict_logits(model.eval(), images, args.batch, tta=recipe.tta, channels_last=cl)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "batch": args.batch,
        "layout": args.layout,
        "wall_s": time.perf_counter() - start,
        "user_s": after.ru_utime - before.ru_utime,
        "system_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
    }
    print(result)
    return result


if __name__ == "__main__":
    cli_main(main)
