"""How much a patch-whitening stem amplifies pixel noise: signal-to-noise power before and after it.

    python bench/whitening_snr.py --data-dir DIR [--noise 0.04] [--eps 5e-4 5e-3 5e-2] [--run RUN]

Whitening divides each eigen-direction of the 2x2 patch covariance by the root of its eigenvalue (plus
``eps``). Natural images put almost no power in the high-frequency directions, so Gaussian pixel noise
of std ``--noise`` (on the 0..1 scale; CIFAR-10-C's severity 1 is 0.04), which spreads evenly over all
directions, comes out of the stem far louder relative to the image than it went in. For each ``eps``
(filters set from 5,000 training images, as a run sets them) and for each ``--run`` (its own frozen
filters) this prints the power of the centred test images over the power of the noise, at the input
and after the stem's conv.
"""

from __future__ import annotations

import argparse

import torch

from distill.augment import normalize
from distill.data import STD, load_cifar10
from distill.errors import UserError, cli_main
from distill.runs import load_run
from students.resnet import PatchWhitening


def snr(conv: torch.nn.Module, images: torch.Tensor, noise: torch.Tensor) -> float:
    """Power of the centred stem output of ``images`` over that of ``noise`` (the conv is linear)."""
    signal = conv(images)
    signal = signal - signal.mean((0, 2, 3), keepdim=True)
    noise_out = conv(noise) - conv(torch.zeros_like(noise[:1]))  # the bias cancels
    return float(signal.pow(2).mean() / noise_out.pow(2).mean())


@torch.no_grad()
def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="holds cifar-10-batches-py/")
    parser.add_argument("--noise", type=float, default=0.04, help="std of the Gaussian pixel noise, 0..1 scale")
    parser.add_argument("--eps", type=float, nargs="+", default=[5e-4, 5e-3, 2e-2, 5e-2, 1e-1])
    parser.add_argument("--run", action="append", default=[], help="a finished run with a whitening stem")
    args = parser.parse_args(argv)
    if args.noise <= 0:
        raise UserError(f"--noise {args.noise}: give a standard deviation above 0")
    train, test = load_cifar10(args.data_dir, download=False)
    images = normalize(torch.from_numpy(test.images[:1000]), channels_last=False)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    noise *= args.noise * 255 / torch.tensor(STD).view(1, 3, 1, 1)  # std on the 0..1 scale, in normalised units
    fit_on = normalize(torch.from_numpy(train.images[:5000]), channels_last=False)  # as a run sets its stem
    convs = {}
    for eps in args.eps:
        stem = PatchWhitening(3, 2, eps)
        stem.init_from_data(fit_on)
        convs[f"eps {eps:g}"] = stem
    for run in args.run:
        model = load_run(run)[1]
        stem = getattr(model, "whiten", None)
        if stem is None:
            raise UserError(f"{run}: its model has no whitening stem; give a run of a model built with one")
        convs[run] = stem.float().cpu()
    ratios = {name: snr(conv, images, noise) for name, conv in convs.items()}
    print(f"signal / noise power, Gaussian pixel noise of std {args.noise:g} (1,000 test images)")
    print(f"  at the input: {float(images.var() / noise.var()):.2f}")
    for name, value in ratios.items():
        print(f"  after the whitening stem, {name}: {value:.2f}")
    return ratios


if __name__ == "__main__":
    cli_main(main)
