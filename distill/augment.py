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
    alternate_flip: bool = False  # flip of view i = a fixed coin per image XOR (i odd): each image both ways

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TTASpec:
    """Test-time augmentation: average the logits over the mirror image and/or small translations.

    With ``translate = t`` the image counts 1/2 and its shifts by (-t, -t) and (+t, +t) pixels
    (reflect padding) 1/4 each; with ``flip`` every one of them is averaged with its mirror.
    """

    flip: bool = False
    translate: int = 0

    @property
    def forward_passes(self) -> int:
        return (2 if self.flip else 1) * (3 if self.translate else 1)


# The test-time augmentations that evaluate.py and bench.py compare on the same weights.
TTA_VARIANTS: dict[str, TTASpec | None] = {
    "none": None,
    "flip": TTASpec(flip=True),
    "flip+shift1": TTASpec(flip=True, translate=1),
}


def sample_views(
    n: int, spec: AugmentSpec, generator: torch.Generator, index: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Draw view parameters for ``n`` images: a dict of (n,) CPU tensors keyed by VIEW_KEYS.

    ``index`` is the epoch (or cached view set) the views are for and ``seed`` the run's seed; they
    matter only with ``spec.alternate_flip``, where view i flips exactly the images that view i - 1
    did not (a coin per image drawn from ``seed`` alone, inverted on odd ``index``).
    """
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
    if spec.flip and spec.alternate_flip:
        coin = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(seed * 7_919 + 17)).bool()
        views["flip"] = coin ^ bool(index % 2)
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


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a (B, C, H, W) batch so output pixel (i, j) is source pixel (i + dy, j + dx), reflect-padded."""
    if dy == 0 and dx == 0:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
    return padded[..., p + dy : p + dy + h, p + dx : p + dx + w]


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
