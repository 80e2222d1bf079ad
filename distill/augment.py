"""Vectorised augmentation on the device, driven by explicit per-image parameters.

A *view* of an image is fixed by integers: a translation ``(dy, dx)`` (a random crop after reflect
padding), a horizontal ``flip`` and a cutout centre ``(cy, cx)``. :func:`sample_views` draws them on
the CPU from a seeded generator (the same numbers on every device and process); :func:`apply_views`
turns a uint8 batch plus its parameters into a normalised float batch with one index gather, no
per-image Python. The logit cache stores these parameters, so a student replays exactly the pixels
its teacher saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from distill.data import MEAN, STD

VIEW_KEYS = ("dy", "dx", "flip", "cy", "cx")


@dataclass(frozen=True)
class AugmentSpec:
    translate: int = 4
    flip: bool = True
    cutout: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def sample_views(n: int, spec: AugmentSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Draw view parameters for ``n`` images: a dict of (n,) CPU tensors keyed by VIEW_KEYS."""
    t = spec.translate

    def randint(low: int, high: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator).to(dtype)

    views = {
        "dy": randint(-t, t + 1, torch.int8),
        "dx": randint(-t, t + 1, torch.int8),
        "flip": randint(0, 2, torch.bool) if spec.flip else torch.zeros(n, dtype=torch.bool),
        "cy": randint(0, 32, torch.uint8),
        "cx": randint(0, 32, torch.uint8),
    }
    return views


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map out-of-range indices as reflect padding would (no edge repeat), valid for |overshoot| < size."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def normalize(images: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 normalised with the CIFAR-10 mean/std."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    x = images.permute(0, 3, 1, 2)  # a channels_last view of the NHWC storage
    x = (x.float() - mean) / std
    return x if channels_last else x.contiguous()


def apply_views(
    images: torch.Tensor, views: dict[str, torch.Tensor], spec: AugmentSpec, channels_last: bool = True
) -> torch.Tensor:
    """Augment a uint8 (B, H, W, C) batch on its device with the given per-image view parameters.

    Pixel (i, j) of the output is pixel (i + dy, j' + dx) of the source, with j' = W-1-j when
    flipped and reflect padding at the borders; then a ``spec.cutout`` square centred on (cy, cx)
    is set to 0 after normalisation (the mean colour). Returns normalised float32 (B, C, H, W).
    """
    b, h, w, _ = images.shape
    dev = images.device
    dy, dx = views["dy"].to(dev, torch.long), views["dx"].to(dev, torch.long)
    flip = views["flip"].to(dev)
    rows_base = torch.arange(h, device=dev)
    cols_base = torch.arange(w, device=dev)
    rows = _reflect(rows_base[None, :] + dy[:, None], h)  # (B, H)
    cols = torch.where(flip[:, None], w - 1 - cols_base[None, :], cols_base[None, :])
    cols = _reflect(cols + dx[:, None], w)  # (B, W)
    batch_index = torch.arange(b, device=dev)[:, None, None]
    out = images[batch_index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C) uint8
    x = normalize(out, channels_last)
    if spec.cutout > 0:
        top = views["cy"].to(dev, torch.long) - spec.cutout // 2
        left = views["cx"].to(dev, torch.long) - spec.cutout // 2
        in_rows = (rows_base[None, :] >= top[:, None]) & (rows_base[None, :] < top[:, None] + spec.cutout)
        in_cols = (cols_base[None, :] >= left[:, None]) & (cols_base[None, :] < left[:, None] + spec.cutout)
        mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
        x = x.masked_fill(mask[:, None], 0.0)
    return x
