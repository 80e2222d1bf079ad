"""Paired probe: a finished run's test accuracy (recipe TTA) with its own BatchNorm statistics against
statistics re-estimated on the un-augmented training images (cumulative average over N images)."""
import json, sys, time
import numpy as np, torch
from distill.compute import Compute
from distill.data import load_cifar10
from distill.engine import batchnorm_from, predict
from distill.runs import load_run
from distill.augment import TTA_VARIANTS

torch.manual_seed(0)
train, test = load_cifar10("/tmp/c10", download=False)
out = {}
for run in sys.argv[1:]:
    recipe, model = load_run(run)
    compute = Compute.resolve(recipe.train.mixed_precision)
    res = {}
    for name, tta in (("none", None), ("recipe", recipe.tta)):
        t = time.time()
        res[f"own_{name}"] = float((predict(model, test.images, tta, compute=compute) == test.labels).mean())
    for n in (10000, 50000):
        idx = np.random.default_rng(0).permutation(len(train.images))[:n]
        t = time.time()
        adapted = batchnorm_from(model.to(compute.device), torch.from_numpy(np.ascontiguousarray(train.images[idx])), 500, compute)
        res[f"bn_s_{n}"] = time.time() - t
        for name, tta in (("none", None), ("recipe", recipe.tta)):
            res[f"train{n}_{name}"] = float((predict(adapted, test.images, tta, compute=compute) == test.labels).mean())
    print(run, json.dumps(res), flush=True)
    out[run] = res
json.dump(out, open("/work/s12/bnprobe.json", "w"), indent=1)
