"""Common corruptions of the test set, in the manner of CIFAR-10-C (Hendrycks & Dietterich 2019).

Twelve corruptions x five severities, each a function of a set of uint8 images (N, 32, 32, 3) on any
device and a severity 1..5, vectorised over the set. Randomness (noise, angles, fields) is drawn for
the whole set at once on the CPU, from a generator seeded by (seed, corruption, severity), so the
corrupted set is the same on every device; the arithmetic after it runs on the device.
The severities follow CIFAR-10-C's parameters for 32x32 images where it defines them; fog and elastic
are re-derived (a multi-octave value-noise fog; a smoothed random displacement field) and documented
here. Pixel values are in [0, 1] below.

| corruption | what a severity sets | severities 1 .. 5 |
| --- | --- | --- |
| ``gaussian_noise`` | std of added Gaussian noise | 0.04, 0.06, 0.08, 0.09, 0.10 |
| ``shot_noise`` | photons per unit intensity (Poisson; fewer = noisier) | 500, 250, 100, 75, 50 |
| ``impulse_noise`` | share of values set to 0 or 1 (salt and pepper) | 0.01, 0.02, 0.03, 0.05, 0.07 |
| ``defocus_blur`` | disk radius in pixels, then its Gaussian anti-alias sigma | (0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1) |
| ``motion_blur`` | one-sided streak: radius, Gaussian sigma (pixels), random angle in +-45 degrees | (10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3) |
| ``zoom_blur`` | mean of the image zoomed by 1.00 .. this factor in steps of 0.01 | 1.05, 1.10, 1.15, 1.20, 1.25 |
| ``fog`` | fog strength, and the octaves' falloff (smaller = finer fog) | (0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75) |
| ``brightness`` | added to HSV value (hue and saturation kept) | 0.05, 0.1, 0.15, 0.2, 0.3 |
| ``contrast`` | factor on the distance from each image's mean | 0.75, 0.5, 0.4, 0.3, 0.15 |
| ``elastic`` | smoothed random displacement field: RMS amplitude, smoothing sigma (pixels) | (0.3, 3), (0.5, 2.5), (0.7, 2), (0.9, 1.5), (1.1, 1.25) |
| ``pixelate`` | side kept before blowing back up to 32 (box down, nearest up) | 0.95, 0.9, 0.85, 0.75, 0.65 |
| ``jpeg`` | JPEG quality (YCbCr, 4:2:0, 8x8 DCT, IJG tables) | 80, 65, 58, 50, 40 |
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from distill.augment import seeded_generator

SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "motion_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "elastic",
    "pixelate",
    "jpeg",
)
# CIFAR-10-C's four groups, for summary tables.
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "motion_blur", "zoom_blur"),
    "weather": ("fog", "brightness"),
    "digital": ("contrast", "elastic", "pixelate", "jpeg"),
}
PARAMS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": (1.05, 1.10, 1.15, 1.20, 1.25),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "elastic": ((0.3, 3), (0.5, 2.5), (0.7, 2), (0.9, 1.5), (1.1, 1.25)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg": (80, 65, 58, 50, 40),
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """``images`` (N, 32, 32, 3) uint8 -> the same shape, corrupted by ``name`` at ``severity`` (1..5)."""
    if name not in PARAMS or severity not in SEVERITIES:
        raise ValueError(f"unknown corruption {name!r} or severity {severity}")
    x = images.permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
    out = _FUNCTIONS[name](x, PARAMS[name][severity - 1], _Draws(seed, name, severity, x.device))
    return (out.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class _Draws:
    """The set's random numbers, drawn on the CPU (the same on every device) and moved to the device."""

    def __init__(self, seed: int, name: str, severity: int, device: torch.device):
        self.key, self.device = (seed, name, severity), device

    def generator(self, what: str) -> torch.Generator:
        return seeded_generator("corruption", *self.key, what)

    def normal(self, what: str, shape: tuple) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator(what)).to(self.device)

    def uniform(self, what: str, shape: tuple) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator(what)).to(self.device)


def _gaussian_noise(x, c, draw):
    return x + c * draw.normal("noise", x.shape)


def _shot_noise(x, c, draw):
    return torch.poisson((x * c).cpu(), generator=draw.generator("photons")).to(x.device) / c


def _impulse_noise(x, c, draw):
    u = draw.uniform("salt", (2, *x.shape))  # where, and which of 0 and 1
    return torch.where(u[0] < c, (u[1] < 0.5).to(x.dtype), x)


def _conv_per_image(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each image (N, 3, H, W) filtered by its own (N, k, k) kernel, every channel alike, reflect-padded."""
    n, c, h, w = x.shape
    k = kernels.shape[-1]
    padded = F.pad(x.reshape(1, n * c, h, w), (k // 2,) * 4, mode="reflect")
    weight = kernels.repeat_interleave(c, dim=0)[:, None]  # (N * 3, 1, k, k)
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)


def _gaussian_kernel1d(sigma: float, radius: int) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(offsets**2) / (2 * sigma**2))
    return k / k.sum()


def _defocus_blur(x, c, draw):
    radius, alias = c
    grid = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    g = _gaussian_kernel1d(alias, 1)  # cv2.GaussianBlur(ksize=3) of the disk: anti-aliasing
    disk = F.conv2d(F.pad(disk[None, None], (1, 1, 1, 1)), (g[:, None] * g[None, :])[None, None])[0, 0]
    return _conv_per_image(x, (disk / disk.sum()).expand(len(x), -1, -1).to(x.device))


def _motion_blur(x, c, draw):
    radius, sigma = c
    angles = torch.rand(len(x), generator=draw.generator("angle")) * 90 - 45  # degrees, on the CPU
    size = 2 * radius + 1
    kernels = torch.zeros(len(x), size, size)
    weights = torch.exp(-(torch.arange(radius + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    for i, w in enumerate(weights):  # the streak: pixel i steps along the angle, weighted by a half-Gaussian
        rad = torch.deg2rad(angles)
        row = (radius - torch.round(i * torch.sin(rad))).long()
        col = (radius + torch.round(i * torch.cos(rad))).long()
        kernels[torch.arange(len(x)), row, col] += w
    kernels = kernels / kernels.sum((1, 2), keepdim=True)
    return _conv_per_image(x, kernels.to(x.device))


def _zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The image magnified by ``factor`` about its centre, cropped back to its size (bilinear)."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], device=x.device).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _zoom_blur(x, c, draw):
    factors = [1 + 0.01 * k for k in range(1, round((c - 1) / 0.01) + 1)]
    total = x.clone()
    for z in factors:
        total += _zoom(x, z)
    return total / (len(factors) + 1)


def _fog(x, c, draw):
    strength, falloff = c
    n, _, h, w = x.shape
    fog = torch.zeros(n, 1, h, w, device=x.device)
    for octave, size in enumerate((2, 4, 8, 16, 32)):  # value noise: coarse to fine, each octave 1/falloff weaker
        noise = draw.uniform(f"fog{size}", (n, 1, size, size))
        fog += F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False) / falloff**octave
    fog = fog - fog.amin((2, 3), keepdim=True)
    fog = fog / fog.amax((2, 3), keepdim=True).clamp_min(1e-6)
    peak = x.amax((1, 2, 3), keepdim=True)
    return (x + strength * fog) * peak / (peak + strength)


def _brightness(x, c, draw):
    value = x.amax(1, keepdim=True)  # HSV value; scaling r, g, b alike keeps hue and saturation
    lifted = (value + c).clamp(max=1)
    return torch.where(value > 0, x * lifted / value.clamp_min(1e-12), lifted.expand_as(x))


def _contrast(x, c, draw):
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def _elastic(x, c, draw):
    amplitude, sigma = c
    n, _, h, w = x.shape
    field = draw.uniform("field", (n, 2, h, w)) * 2 - 1  # (N, 2, H, W) in [-1, 1]
    radius = math.ceil(3 * sigma)
    g = _gaussian_kernel1d(sigma, radius).to(x.device)
    field = F.pad(field.reshape(1, 2 * n, h, w), (radius,) * 4, mode="replicate")
    field = F.conv2d(field, g.view(1, 1, 1, -1).expand(2 * n, 1, 1, -1), groups=2 * n)
    field = F.conv2d(field, g.view(1, 1, -1, 1).expand(2 * n, 1, -1, 1), groups=2 * n).reshape(n, 2, h, w)
    field = field / field.flatten(1).std(1).clamp_min(1e-6).view(n, 1, 1, 1) * amplitude  # pixels, RMS = amplitude
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=x.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    grid = grid + field.permute(0, 2, 3, 1) * torch.tensor([2 / w, 2 / h], device=x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _pixelate(x, c, draw):
    side = int(x.shape[-1] * c)
    small = F.interpolate(x, size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="nearest")


# -- JPEG: the codec's lossy steps, in torch ---------------------------------------------------------------------

_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)  # fmt: skip
_CHROMA = torch.full((8, 8), 99.0)
_CHROMA[:4, :4] = torch.tensor(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32
)


def _quant_table(table: torch.Tensor, quality: int) -> torch.Tensor:
    """The IJG scaling of a base table to ``quality``."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return torch.clamp(torch.floor((table * scale + 50) / 100), 1, 255)


def _dct_matrix() -> torch.Tensor:
    k, n = torch.arange(8, dtype=torch.float32)[:, None], torch.arange(8, dtype=torch.float32)[None, :]
    m = torch.cos((2 * n + 1) * k * math.pi / 16) * math.sqrt(2 / 8)
    m[0] /= math.sqrt(2)
    return m  # orthonormal: m @ m.T = I


def _jpeg_plane(plane: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """One (N, H, W) plane in 0..255 through 8x8 DCT, quantisation and back."""
    n, h, w = plane.shape
    m = _dct_matrix().to(plane.device)
    blocks = (plane - 128).reshape(n, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4)  # (N, bh, bw, 8, 8)
    coeffs = m @ blocks @ m.T
    table = table.to(plane.device)
    coeffs = torch.round(coeffs / table) * table
    return (m.T @ coeffs @ m).permute(0, 1, 3, 2, 4).reshape(n, h, w) + 128


def _jpeg(x, c, draw):
    rgb = x * 255
    r, g, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b  # JFIF YCbCr
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    y = _jpeg_plane(y, _quant_table(_LUMA, c))
    half = [F.avg_pool2d(p[:, None], 2)[:, 0] for p in (cb, cr)]  # 4:2:0 chroma subsampling
    h, w = x.shape[-2:]
    pad = [F.pad(p[:, None], (0, (-p.shape[-1]) % 8, 0, (-p.shape[-2]) % 8), mode="replicate")[:, 0] for p in half]
    cb, cr = (
        F.interpolate(_jpeg_plane(p, _quant_table(_CHROMA, c))[:, None, : h // 2, : w // 2], size=(h, w))[:, 0]
        for p in pad
    )
    r = y + 1.402 * (cr - 128)
    g = y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)
    b = y + 1.772 * (cb - 128)
    return torch.stack([r, g, b], 1).round().clamp(0, 255) / 255


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "fog": _fog,
    "brightness": _brightness,
    "contrast": _contrast,
    "elastic": _elastic,
    "pixelate": _pixelate,
    "jpeg": _jpeg,
}
