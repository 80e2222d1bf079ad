import sys, torch, numpy as np
import students, teachers
from distill.runs import load_run
from distill.data import load_cifar10
from distill.devices import make_accelerator
from distill.compute import Compute
from distill import engine
torch.manual_seed(0)
train, test = load_cifar10("/tmp/c10", download=False)
idx = np.random.default_rng(0).permutation(len(train.labels))[:10000]
imgs = torch.from_numpy(train.images[idx])
ti, tl = torch.from_numpy(test.images), torch.from_numpy(test.labels)
for run in sys.argv[1:]:
    recipe, model = load_run(run)
    acc = make_accelerator(recipe)
    model = model.to(memory_format=torch.channels_last)
    comp = Compute.resolve(recipe.train.mixed_precision)
    a0 = engine.evaluate(model, ti, tl, acc, 2000, recipe.tta)
    fixed = engine.batchnorm_from(model, imgs, 500, comp)
    a1 = engine.evaluate(fixed, ti, tl, acc, 2000, recipe.tta)
    print(run, "as trained %.4f" % a0, "BN from 10k train images %.4f" % a1, flush=True)
