"""Vectorised augmentation on the device, driven by explicit per-image parameters.

A *view* of training image ``i`` is fixed by a handful of numbers per image (:func:`view_keys`):

- ``dy, dx`` (int8) a translation, i.e. a random crop after reflect padding; ``flip`` (bool) a mirror;
- ``op, mag`` (uint8, int8) one TrivialAugment operation (:data:`POLICY_OPS`) and its signed magnitude bin;
- ``cy, cx`` (uint8) the centre of a cutout square;
- ``partner, lam, by, bx, bh, bw`` (int32, float32, uint8 x 4) mixing: image ``partner``'s own view is
  mixed in, pixel-blended with weight ``lam`` for the image itself (mixup), or pasted into the box
  ``(by, bx, bh, bw)`` (cutmix, where ``lam = 1 - box area / image area``); the loss weighs the
  image's label by ``lam`` and the partner's by ``1 - lam``. An unmixed image is its own partner
  with ``lam = 1``.

:func:`sample_views` draws them on the CPU from a seeded generator (the same numbers on every device
and process); :func:`apply_views` turns the uint8 training set, the parameters and a batch index into a
normalised float batch, with no per-image Python. Every step is elementwise, an integer gather or an
integer reduction, so an image's view does not depend on the batch it is computed in: the logit cache
stores the parameters, and a student replays, bit for bit, the pixels its teacher saw.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from distill.data import MEAN, STD

POLICIES = ("none", "trivial", "trivial_wide")
POLICY_OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "color",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
)
MAG_BINS = 30  # magnitudes are bins 0..30 of each op's range, as TrivialAugment's 31 bins
# The largest magnitude of each op, per policy: TrivialAugment's "RA" space and its wide space
# (Mueller & Hutter 2021, Table 1; torchvision's TrivialAugmentWide).
POLICY_RANGES = {
    "trivial": {"shear": 0.3, "translate": 10.0, "rotate": 30.0, "enhance": 0.9, "posterize_bits": 4},
    "trivial_wide": {"shear": 0.99, "translate": 32.0, "rotate": 135.0, "enhance": 0.99, "posterize_bits": 2},
}
FILL = 128  # the grey that geometric ops leave where the image moved away


@dataclass(frozen=True)
class AugmentSpec:
    """What the training views are made of; recorded in a logit cache, which a student must match."""

    translate: int = 4  # random crop after reflect-padding by this many pixels (= integer translation)
    flip: bool = True  # random horizontal flip
    alternate_flip: bool = False  # flip each image in every other epoch / view set instead of by a fresh coin
    cutout: int = 0  # side of a square set to the mean colour, in pixels; 0 = off
    policy: str = "none"  # "trivial" / "trivial_wide": one TrivialAugment op per image and view
    mixup_alpha: float = 0.0  # > 0: mixup with lam ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0  # > 0: cutmix with lam ~ Beta(alpha, alpha)
    mix_prob: float = 1.0  # chance that an image is mixed at all (when an alpha is > 0)
    cutmix_switch_prob: float = 0.5  # with both alphas > 0: chance of cutmix instead of mixup

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def mixes(self) -> bool:
        return self.mix_prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    @property
    def label(self) -> str:
        """``"translate 2, alternate flip, trivial, cutout 8, mixup 0.2 / cutmix 1.0 p 0.5"``: what is on."""
        parts = [f"translate {self.translate}"] if self.translate else []
        parts += ["alternate flip" if self.alternate_flip else "flip"] if self.flip else []
        parts += [self.policy] if self.policy != "none" else []
        parts += [f"cutout {self.cutout}"] if self.cutout else []
        if self.mixes:
            mixers = [f"{n} {a:g}" for n, a in (("mixup", self.mixup_alpha), ("cutmix", self.cutmix_alpha)) if a > 0]
            parts.append(" / ".join(mixers) + f" p {self.mix_prob:g}")
        return ", ".join(parts) or "none"


def view_keys(spec: AugmentSpec) -> tuple[str, ...]:
    """The per-image parameters a view of ``spec`` has (and a cache of it stores)."""
    keys = ["dy", "dx", "flip"]
    keys += ["cy", "cx"] if spec.cutout else []
    keys += ["op", "mag"] if spec.policy != "none" else []
    keys += ["partner", "lam", "by", "bx", "bh", "bw"] if spec.mixes else []
    return tuple(keys)


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

    @property
    def label(self) -> str:
        """``"flip, +-1px"``, ``"flip"``, ... or ``"none"``."""
        return (
            ", ".join((["flip"] if self.flip else []) + ([f"+-{self.translate}px"] if self.translate else [])) or "none"
        )

    def to_dict(self) -> dict:
        return asdict(self)


# The test-time augmentations that evaluate.py and bench.py compare on the same weights.
TTA_VARIANTS: dict[str, TTASpec | None] = {
    "none": None,
    "flip": TTASpec(flip=True),
    "flip+shift1": TTASpec(flip=True, translate=1),
}


def seeded_generator(*parts: int | str) -> torch.Generator:
    """A CPU generator seeded by a tuple such as ``("epoch", seed, epoch)``: the same on every process
    and machine, and again after ``--resume``; distinct tuples give unrelated streams."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def sample_views(
    n: int, spec: AugmentSpec, generator: torch.Generator, index: int = 0, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Draw the view parameters of ``n`` images: a dict of (n,) CPU tensors keyed by :func:`view_keys`.

    ``index`` is the epoch (or cached view set) the views are for and ``seed`` the run's seed; they
    matter only with ``spec.alternate_flip``, where view i flips exactly the images that view i - 1
    did not (a coin per image drawn from ``seed`` alone, inverted on odd ``index``).
    """
    pad = spec.translate

    def randint(low: int, high: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=generator).to(dtype)

    views = {"dy": randint(-pad, pad + 1, torch.int8), "dx": randint(-pad, pad + 1, torch.int8)}
    views["flip"] = randint(0, 2, torch.bool) if spec.flip else torch.zeros(n, dtype=torch.bool)
    if spec.flip and spec.alternate_flip:
        coin = torch.randint(0, 2, (n,), generator=seeded_generator("flip", seed)).bool()
        views["flip"] = coin ^ bool(index % 2)
    if spec.cutout:
        views["cy"], views["cx"] = randint(0, 32, torch.uint8), randint(0, 32, torch.uint8)
    if spec.policy != "none":
        views["op"] = randint(0, len(POLICY_OPS), torch.uint8)
        views["mag"] = (randint(0, MAG_BINS + 1) * (randint(0, 2) * 2 - 1)).to(torch.int8)
    if spec.mixes:
        views.update(_sample_mixing(n, spec, generator))
    return views


def _sample_mixing(n: int, spec: AugmentSpec, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Partners and weights for mixup / cutmix, in the manner of timm's Mixup (per image, lam corrected
    to the box's real area for cutmix)."""
    uniform = torch.rand(3, n, generator=generator, dtype=torch.float64)
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    mixed = uniform[0] < spec.mix_prob
    if spec.mixup_alpha > 0 and spec.cutmix_alpha > 0:
        cut = mixed & (uniform[1] < spec.cutmix_switch_prob)
    else:
        cut = mixed & (spec.cutmix_alpha > 0)
    alpha = np.where(cut.numpy(), max(spec.cutmix_alpha, 1e-6), max(spec.mixup_alpha, 1e-6))
    lam = torch.from_numpy(rng.beta(alpha, alpha)).to(torch.float64)
    lam = torch.where(mixed, lam, torch.ones(n, dtype=torch.float64))
    # cutmix: a box of side 32 * sqrt(1 - lam) around a uniform centre, clipped to the image
    half = (32 * torch.sqrt(1 - lam)).to(torch.long) // 2
    cy, cx = torch.randint(0, 32, (2, n), generator=generator)
    y0, y1 = (cy - half).clamp(0, 32), (cy + half).clamp(0, 32)
    x0, x1 = (cx - half).clamp(0, 32), (cx + half).clamp(0, 32)
    bh, bw = torch.where(cut, y1 - y0, 0), torch.where(cut, x1 - x0, 0)
    lam = torch.where(cut, 1 - (bh * bw).double() / 1024, lam)
    own = torch.arange(n)
    return {
        "partner": torch.where(mixed, torch.randperm(n, generator=generator), own).to(torch.int32),
        "lam": lam.to(torch.float32),
        "by": torch.where(cut, y0, 0).to(torch.uint8),
        "bx": torch.where(cut, x0, 0).to(torch.uint8),
        "bh": bh.to(torch.uint8),
        "bw": bw.to(torch.uint8),
    }


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


def _crop_flip(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8: pixel (i, j) is source (i + dy, j' + dx), j' = W-1-j when flipped, reflect-padded."""
    b, h, w, _ = images.shape
    dev = images.device
    rows = _reflect(torch.arange(h, device=dev)[None, :] + dy.long()[:, None], h)  # (B, H)
    cols = torch.arange(w, device=dev)[None, :].expand(b, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    cols = _reflect(cols + dx.long()[:, None], w)  # (B, W)
    return images[torch.arange(b, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]


# -- TrivialAugment's operations, each on a uint8 (B, H, W, C) batch with a float magnitude m per image ---------


def _warp(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour affine warp about the centre: output pixel p is source ``matrix @ (p - c) + c``
    (matrix (B, 2, 3): rows for y and x, last column a shift); outside the image becomes :data:`FILL`.
    Coordinates are computed elementwise, so the result never depends on the batch."""
    b, h, w, _ = x.shape
    c = (h - 1) / 2
    ys = torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1) - c
    xs = torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w) - c
    m = matrix.view(b, 6, 1, 1)
    src_y = torch.round(m[:, 0] * ys + m[:, 1] * xs + m[:, 2] + c).long()
    src_x = torch.round(m[:, 3] * ys + m[:, 4] * xs + m[:, 5] + c).long()
    inside = (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
    flat = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).view(b, h * w, 1).expand(-1, -1, x.shape[-1])
    out = x.reshape(b, h * w, -1).gather(1, flat).view_as(x)
    return torch.where(inside[..., None], out, torch.full_like(out, FILL))


def _affine(m: torch.Tensor, entries: dict[int, torch.Tensor]) -> torch.Tensor:
    """Identity (B, 2, 3) matrices with some entries (flat index 0..5) replaced."""
    matrix = torch.tensor([1.0, 0, 0, 0, 1, 0], device=m.device).repeat(len(m), 1)
    for i, value in entries.items():
        matrix[:, i] = value
    return matrix


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance (``Image.blend``): ``degenerate + factor * (x - degenerate)``, clipped and truncated."""
    out = degenerate.float() + factor.view(-1, 1, 1, 1) * (x.float() - degenerate.float())
    return out.clamp(0, 255).to(torch.uint8)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """PIL's "L" conversion of (B, H, W, 3) uint8 (its fixed-point ITU-R 601 weights), as uint8 (B, H, W, 1)."""
    r, g, b = x.to(torch.int32).unbind(-1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)[..., None]


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter (centre 5, neighbours 1, / 13) by integer shifts; the border is kept."""
    xi = x.to(torch.int32)
    h, w = x.shape[1:3]
    total = 4 * xi[:, 1:-1, 1:-1]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total = total + xi[:, 1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
    out = xi.clone()
    out[:, 1:-1, 1:-1] = torch.div(total + 6, 13, rounding_mode="floor")
    return out.to(torch.uint8)


def _nchw(fn):
    """Run a torchvision kernel written for (..., C, H, W) on our (B, H, W, C) layout."""
    return lambda x: fn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _policy_op(name: str, x: torch.Tensor, m: torch.Tensor, r: dict) -> torch.Tensor:
    """Apply op ``name`` with magnitude ``m`` in [-1, 1] (a fraction of the op's largest, from ``r``)."""
    if name == "identity":
        return x
    if name == "shear_x":
        return _warp(x, _affine(m, {3: m * r["shear"]}))
    if name == "shear_y":
        return _warp(x, _affine(m, {1: m * r["shear"]}))
    if name == "translate_x":
        return _warp(x, _affine(m, {5: m * r["translate"]}))
    if name == "translate_y":
        return _warp(x, _affine(m, {2: m * r["translate"]}))
    if name == "rotate":
        theta = m * math.radians(r["rotate"])
        cos, sin = torch.cos(theta), torch.sin(theta)
        return _warp(x, _affine(m, {0: cos, 1: -sin, 3: sin, 4: cos}))
    factor = (1 + m.double() * r["enhance"]).float()
    if name == "brightness":
        return _blend(torch.zeros_like(x), x, factor)
    if name == "color":
        return _blend(_gray(x).expand_as(x), x, factor)
    if name == "contrast":
        pixels = x.shape[1] * x.shape[2]  # PIL: the grey image's mean, rounded; integer sums are exact
        mean = torch.div(_gray(x).to(torch.int32).sum((1, 2, 3)) + pixels // 2, pixels, rounding_mode="floor")
        return _blend(mean.view(-1, 1, 1, 1).expand_as(x), x, factor)
    if name == "sharpness":
        return _blend(_smooth(x), x, factor)
    if name == "posterize":
        bits = 8 - torch.round(m.abs() * (8 - r["posterize_bits"])).to(torch.int32)
        mask = torch.bitwise_left_shift(torch.full_like(bits, 255), 8 - bits) & 255  # keep the top bits
        return x & mask.to(torch.uint8).view(-1, 1, 1, 1)
    if name == "solarize":
        threshold = (256 * (1 - m.abs())).round().view(-1, 1, 1, 1)
        return torch.where(x.float() >= threshold, 255 - x, x)
    if name in ("autocontrast", "equalize"):
        import torchvision.transforms.v2.functional as TF  # only here: torchvision takes seconds to import

        return _nchw(TF.autocontrast_image if name == "autocontrast" else TF.equalize_image)(x)
    raise ValueError(f"unknown policy op {name}")


def apply_policy(x: torch.Tensor, op: torch.Tensor, mag: torch.Tensor, policy: str) -> torch.Tensor:
    """One TrivialAugment op per image of a uint8 (B, H, W, C) batch: ``op`` indexes :data:`POLICY_OPS`,
    ``mag`` is the signed bin (-30..30) of its magnitude. The batch is sorted by op so that each op runs
    once, on its own images (one host sync per batch, for the group sizes); no per-image Python."""
    ranges = POLICY_RANGES[policy]
    m = (mag.to(x.device, torch.float64) / MAG_BINS).float()  # as PIL gets its factors: a double made float
    op = op.to(x.device).long()
    order = torch.argsort(op, stable=True)
    counts = torch.bincount(op, minlength=len(POLICY_OPS)).tolist()
    xs, ms, parts, start = x[order], m[order], [], 0
    for name, count in zip(POLICY_OPS, counts):
        if count:
            parts.append(_policy_op(name, xs[start : start + count], ms[start : start + count], ranges))
        start += count
    out = torch.empty_like(x)
    out[order] = torch.cat(parts)
    return out  # (B, H, W, C), contiguous


def _single_views(images: torch.Tensor, views: dict[str, torch.Tensor], spec: AugmentSpec, cl: bool) -> torch.Tensor:
    """Each image's own view, before mixing: crop + flip, policy op, normalise, cutout."""
    out = _crop_flip(images, views["dy"], views["dx"], views["flip"])  # (B, H, W, C) uint8
    if spec.policy != "none":
        out = apply_policy(out, views["op"], views["mag"], spec.policy)
    x = normalize(out, cl)
    if spec.cutout > 0:
        top = views["cy"].long() - spec.cutout // 2
        left = views["cx"].long() - spec.cutout // 2
        x = x.masked_fill(_box_mask(x, top, left, spec.cutout, spec.cutout)[:, None], 0.0)
    return x


def _box_mask(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, height, width) -> torch.Tensor:
    """(B, H, W) bool: inside the box of each image of ``x`` (B, C, H, W) with corner (top, left)."""
    rows = torch.arange(x.shape[-2], device=x.device)[None, :]
    cols = torch.arange(x.shape[-1], device=x.device)[None, :]
    height = height[:, None] if torch.is_tensor(height) else height
    width = width[:, None] if torch.is_tensor(width) else width
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + height)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + width)
    return in_rows[:, :, None] & in_cols[:, None, :]


def apply_views(
    images: torch.Tensor,
    views: dict[str, torch.Tensor],
    index: torch.Tensor,
    spec: AugmentSpec,
    channels_last: bool = True,
) -> torch.Tensor:
    """The views of images ``index`` (B,) of the uint8 set ``images`` (N, H, W, C), as a normalised
    float32 (B, C, H, W) batch; ``views`` holds every image's parameters (N,), on the same device.

    Pixel (i, j) of a view is source pixel (i + dy, j' + dx) (j' = W-1-j when flipped, reflect padding
    at the borders); then its policy op, normalisation, and a ``spec.cutout`` square centred on
    (cy, cx) set to 0 (the mean colour). With mixing, the partner's own view is blended in with weight
    ``1 - lam`` (mixup) or pasted into the box (cutmix).
    """
    own = {k: v[index] for k, v in views.items()}
    x = _single_views(images[index], own, spec, channels_last)
    if not spec.mixes:
        return x
    partner = own["partner"].long()
    other = _single_views(images[partner], {k: v[partner] for k, v in views.items()}, spec, channels_last)
    lam = own["lam"].view(-1, 1, 1, 1)
    box = _box_mask(x, own["by"].long(), own["bx"].long(), own["bh"].long(), own["bw"].long())  # empty: mixup
    cut = (own["bh"] > 0).view(-1, 1, 1, 1)
    blended = lam * x + (1 - lam) * other
    return torch.where(cut, torch.where(box[:, None], other, x), blended)


def mix_targets(labels: torch.Tensor, views: dict[str, torch.Tensor], index: torch.Tensor):
    """``(partner labels, lam)`` of a batch, or ``(None, None)`` when the views do not mix."""
    if "partner" not in views:
        return None, None
    return labels[views["partner"][index].long()], views["lam"][index]
