"""bn_screen.py RUN...: score each finished run's saved weights on the CIFAR-10 test set (no TTA and the recipe's
TTA: flip + diagonal 1-pixel shifts) with the run's own BatchNorm statistics, and with them re-estimated over the
50,000 training images (cumulative average, batches of 2000, no augmentation; and with flips). bf16 autocast.
(The script as run, its statements one to a line for the linter.)"""

import json
import sys
import time

import numpy as np
import torch
from torch import nn

from distill.augment import normalize, shift
from distill.data import load_cifar10
from distill.runs import load_run

torch.set_grad_enabled(False)
images = torch.from_numpy(np.load("/work/sets/cifar10_test.npy"))
labels = torch.from_numpy(np.load("/work/sets/cifar10_test_labels.npy")).long()
train, _ = load_cifar10("/tmp/c10", download=False)
train_x = torch.from_numpy(np.ascontiguousarray(train.images))


def accuracy(logits: list[torch.Tensor]) -> float:
    return round((torch.cat(logits).argmax(-1) == labels).float().mean().item() * 100, 2)


def score(model):
    plain, tta = [], []
    for s in range(0, len(images), 2000):
        x = normalize(images[s : s + 2000], channels_last=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):

            def both(v):
                return (model(v).float() + model(torch.flip(v, dims=[3])).float()) / 2

            c = both(x)
            plain.append(model(x).float())
            tta.append(0.5 * c + 0.25 * both(shift(x, -1, -1)) + 0.25 * both(shift(x, 1, 1)))
    return {"none": accuracy(plain), "tta": accuracy(tta)}


def reestimate(model, flip, bs):
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    for s in range(0, len(train_x), bs):
        x = normalize(train_x[s : s + bs], channels_last=True)
        if flip:
            x = torch.cat([x[: len(x) // 2], torch.flip(x[len(x) // 2 :], dims=[3])])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    model.eval()


out = {}
for run in sys.argv[1:]:
    t = time.perf_counter()
    row = {}
    recipe, model = load_run(run)
    model.eval()
    row["own"] = score(model)
    reestimate(model, False, 2000)
    row["train"] = score(model)
    recipe, model = load_run(run)
    reestimate(model, True, 2000)
    row["train_flip"] = score(model)
    out[run] = row
    print(run, row, f"{time.perf_counter() - t:.0f} s", flush=True)
    json.dump(out, open("/work/s8/bn_screen.json", "w"), indent=1)
