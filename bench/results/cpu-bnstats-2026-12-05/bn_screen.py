"""bn_screen.py RUN...: score each finished run's saved weights on the CIFAR-10 test set (no TTA and the recipe's
TTA: flip + diagonal 1-pixel shifts) with the run's own BatchNorm statistics, and with them re-estimated over the
50,000 training images (cumulative average, batches of 2000, no augmentation; and with flips). bf16 autocast.
(Tidied after it ran, not rerun: the re-estimate now calls engine.batchnorm_from, the same pass it wrote out, and the
plain view's logits are computed once, not twice.)"""

import json
import sys
import time

import numpy as np
import torch

from distill.augment import normalize, shift
from distill.compute import Compute
from distill.data import load_cifar10
from distill.engine import batchnorm_from
from distill.runs import load_run

torch.set_grad_enabled(False)
images = torch.from_numpy(np.load("/work/sets/cifar10_test.npy"))
labels = torch.from_numpy(np.load("/work/sets/cifar10_test_labels.npy")).long()
train, _ = load_cifar10("/tmp/c10", download=False)
train_x = torch.from_numpy(np.ascontiguousarray(train.images))


def accuracy(logits: list[torch.Tensor]) -> float:
    return round((torch.cat(logits).argmax(-1) == labels).float().mean().item() * 100, 2)


def mirrored(model, x, own=None):
    """The mean of the logits of ``x`` and of its mirror image (``own``: those of ``x``, if already computed)."""
    own = model(x).float() if own is None else own
    return (own + model(torch.flip(x, dims=[3])).float()) / 2


def score(model):
    plain, tta = [], []
    for s in range(0, len(images), 2000):
        x = normalize(images[s : s + 2000], channels_last=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            own = model(x).float()
            plain.append(own)
            tta.append(
                0.5 * mirrored(model, x, own)
                + 0.25 * mirrored(model, shift(x, -1, -1))
                + 0.25 * mirrored(model, shift(x, 1, 1))
            )
    return {"none": accuracy(plain), "tta": accuracy(tta)}


def reestimate(model, flip, bs):
    """``engine.batchnorm_from`` on the training images; with ``flip``, the second half of each batch mirrored."""
    x = train_x.clone() if flip else train_x
    if flip:
        for s in range(0, len(x), bs):
            x[s + bs // 2 : s + bs] = x[s + bs // 2 : s + bs].flip(2)  # NHWC: axis 2 is the width
    return batchnorm_from(model, x, bs, Compute.resolve("auto"))


out = {}
for run in sys.argv[1:]:
    t = time.perf_counter()
    row = {}
    recipe, model = load_run(run)
    model.eval()
    row["own"] = score(model)
    row["train"] = score(reestimate(model, False, 2000))
    row["train_flip"] = score(reestimate(model, True, 2000))
    out[run] = row
    print(run, row, f"{time.perf_counter() - t:.0f} s", flush=True)
    json.dump(out, open("/work/s8/bn_screen.json", "w"), indent=1)
