"""The assignment's residual network: blocks computing ``ReLU(S(x) + F(x))``.

``F = conv3x3 -> BN -> ReLU -> conv3x3 -> BN`` and ``S`` is the identity, or a 1x1 conv + BN where
the shape changes. Layout after timm's ``resnet.py``: one builder, variants as argument dicts, and
the ``forward_features`` / ``forward_head(x, pre_logits=False)`` API so feature KD needs no hooks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class StridedConv1x1(nn.Conv2d):
    """A 1x1 convolution with a stride, which on a CPU subsamples first and convolves with stride 1.

    The two are the same function (a 1x1 kernel without padding reads exactly the pixels the stride lands
    on), with the same weights. PyTorch 2.14.1's CPU backward of a channels-last 1x1 stride-2 convolution
    with 8 input channels corrupts the heap at odd batch sizes in 2 threads (``bench/conv_crash_sweep.py``
    found 61 of 4,096 shapes, all of this kind; issue 20), which ``cifar_resnet_tiny``'s shortcut met on a
    ragged last batch; the stride-1 kernel never crashed. On a GPU it is a plain strided convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__(in_ch, out_ch, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or self.stride == (1, 1):
            return super().forward(x)
        return F.conv2d(x[:, :, :: self.stride[0], :: self.stride[1]], self.weight)


# The numeric kwargs a model reads, and the range in which it can train: checked before anything is built, so that
# a logit scale of 0 or a BatchNorm momentum above 1 is refused rather than trained (issue 35).
RANGES = {
    "logit_scale": (lambda v: v > 0, "> 0 (0 makes every logit 0, so nothing reaches the net)"),
    "bn_momentum": (lambda v: 0 <= v <= 1, "in [0, 1] (PyTorch's convention: the weight of each new batch)"),
    "bn_eps": (lambda v: v > 0, "> 0"),
    "whiten_eps": (lambda v: v > 0, "> 0"),
    "drop_rate": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def check_ranges(**values: float) -> None:
    """Raise ValueError (``create_model`` says "bad model.kwargs") for a value outside :data:`RANGES`."""
    for name, value in values.items():
        ok, text = RANGES[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not ok(value):
            raise ValueError(f"{name} must be {text}, got {value!r}")


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
INITS = ("zero_last", "kaiming", "dirac")
HEADS = ("avg", "max")


def batch_norm(channels: int, momentum: float = 0.1, eps: float = 1e-5, learn_weight: bool = True) -> nn.BatchNorm2d:
    """A BatchNorm2d whose weight (gamma) learns, or stays frozen at 1 (airbench's way: only the bias learns,
    and the convolution before it carries the scale)."""
    bn = nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
    bn.weight.requires_grad_(learn_weight)
    return bn


class ResidualBlock(nn.Module):
    """``ReLU(S(x) + F(x))`` with ``F = conv-BN-act-conv-BN`` and ``S`` identity or 1x1 conv + BN.

    ``act`` is the activation inside ``F`` (the assignment's ReLU by default; ``gelu`` as airbench); the
    block's outer activation is always ReLU. ``norm`` builds each BatchNorm from its channel count.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, act: str = "relu", norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_ch)
        self.act = ACTIVATIONS[act]()
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = norm(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(StridedConv1x1(in_ch, out_ch, stride), norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(self.shortcut(x) + out)


class PatchWhitening(nn.Module):
    """A frozen ``k x k`` conv that whitens image patches, set from the training data (airbench's first layer).

    :meth:`init_from_data` computes the covariance of all ``k x k x C`` patches and sets the filters
    to its eigenvectors scaled by ``1 / sqrt(eigenvalue + eps)``, plus their negatives (so a ReLU
    after it keeps both signs): ``2 * k * k * C`` output channels. The weights are not trained (and
    not counted as trainable parameters); the bias is.
    """

    def __init__(self, in_chans: int = 3, kernel_size: int = 2, eps: float = 5e-4):
        super().__init__()
        self.eps = eps
        dim = in_chans * kernel_size * kernel_size
        self.out_chans = 2 * dim
        self.conv = nn.Conv2d(in_chans, self.out_chans, kernel_size, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the filters from a normalised float batch ``x`` (B, C, H, W) of training images."""
        k, c = self.conv.kernel_size[0], self.conv.in_channels
        dim = c * k * k
        total, outer, count = torch.zeros(dim, dtype=torch.float64), torch.zeros(dim, dim, dtype=torch.float64), 0
        for chunk in x.split(500):  # patch covariance, accumulated in float64 a chunk at a time
            patches = torch.nn.functional.unfold(chunk.float(), k).transpose(1, 2).reshape(-1, dim).double().cpu()
            total += patches.sum(0)
            outer += patches.T @ patches
            count += len(patches)
        mean = total / count
        cov = (outer - count * torch.outer(mean, mean)) / (count - 1)
        eigvals, eigvecs = torch.linalg.eigh(cov)
        filters = (eigvecs.T / torch.sqrt(eigvals + self.eps)[:, None]).reshape(-1, c, k, k)
        self.conv.weight.copy_(torch.cat([filters, -filters]).to(self.conv.weight))
        self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CifarResNet(nn.Module):
    """A stem conv, then stages of :class:`ResidualBlock`; stage i > 0 halves the resolution.

    Every conv runs inside a block or the stem; what differs between variants is only where the
    resolution drops. ``downsample="stride"`` is ResNet's way (the first block of a stage has a
    stride-2 conv1 and a stride-2 1x1 shortcut); ``"pool"`` puts a 2x2 max-pool between stages and
    keeps every block at stride 1, as the fast CIFAR trainers do. With ``stem_pool`` the stem's
    output is max-pooled too, so no block runs at 32x32 (the first stage's maps are a quarter the size).

    Args:
        widths: channels of each stage.
        blocks: residual blocks in each stage.
        stem_width: channels of the 3x3 stem conv (defaults to ``widths[0]``).
        num_classes: outputs of the linear head.
        init: how the convolutions start. ``"zero_last"``: Kaiming (fan-out) weights and each block's last BN
            at gamma = 0, so blocks begin as the identity; ``"kaiming"``: the same without the zero gamma;
            ``"dirac"``: PyTorch's default weights with the first ``min(in, out)`` filters of every trainable
            conv set to the identity (airbench's partial identity; with ``norm_weight=False``).
        whiten: put a frozen 2x2 patch-whitening conv (:class:`PatchWhitening`) and a ReLU before the
            stem conv; the trainer sets it from the training images (:meth:`init_from_data`).
        downsample: ``"stride"`` or ``"pool"``: how stages i > 0 halve the resolution (see above).
        stem_pool: a 2x2 max-pool after the stem.
        whiten_eps: added to the patch covariance's eigenvalues before the whitening divides by their
            root: the larger, the less the stem amplifies the faint high-frequency directions (where
            pixel noise lives; BENCHMARKS.md, "Robustness").
        act: the activation inside each block's ``F`` and in the stem, ``"relu"`` or ``"gelu"``; the
            blocks' outer activation, ``ReLU(S(x) + F(x))``, is always ReLU.
        norm_weight: learn every BatchNorm's weight (gamma); ``False`` freezes them at 1, as airbench does,
            so only the biases learn (fewer trainable parameters, and a high LR leaves the scale alone).
        bn_momentum, bn_eps: every BatchNorm's running-statistics momentum and epsilon (airbench: 0.4, 1e-12).
        head: the global pool before the linear head, ``"avg"`` or ``"max"`` (airbench).
        logit_scale: the head's logits are multiplied by this (airbench: 1/9, which slows the head's
            effective learning rate by its square).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 240, 240),
        blocks: Sequence[int] = (2, 2, 2, 2),
        stem_width: int | None = None,
        num_classes: int = 10,
        in_chans: int = 3,
        init: str = "zero_last",
        drop_rate: float = 0.0,
        whiten: bool = False,
        downsample: str = "stride",
        stem_pool: bool = False,
        whiten_eps: float = 5e-4,
        act: str = "relu",
        norm_weight: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        head: str = "avg",
        logit_scale: float = 1.0,
    ):
        super().__init__()
        check_ranges(logit_scale=logit_scale, bn_momentum=bn_momentum, bn_eps=bn_eps, whiten_eps=whiten_eps,
                     drop_rate=drop_rate)  # fmt: skip
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must be non-empty and of equal length")
        if downsample not in ("stride", "pool"):
            raise ValueError(f"downsample '{downsample}' is not one of 'stride', 'pool'")
        for name, value, choices in (("act", act, tuple(ACTIVATIONS)), ("init", init, INITS), ("head", head, HEADS)):
            if value not in choices:
                raise ValueError(f"{name} '{value}' is not one of {', '.join(map(repr, choices))}")
        if init == "zero_last" and not norm_weight:
            raise ValueError("init 'zero_last' starts each block's last BatchNorm weight at 0, which norm_weight=False "
                             "freezes at 1: use init 'dirac' (or 'kaiming')")  # fmt: skip

        def norm(channels: int) -> nn.BatchNorm2d:
            return batch_norm(channels, bn_momentum, bn_eps, norm_weight)

        stem_width = stem_width or widths[0]
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.logit_scale = logit_scale
        whitening = PatchWhitening(in_chans, eps=whiten_eps) if whiten else None
        stem_in = whitening.out_chans if whitening else in_chans
        self.stem = nn.Sequential(
            *([whitening, ACTIVATIONS[act]()] if whitening else []),
            nn.Conv2d(stem_in, stem_width, 3, padding=1, bias=False),
            norm(stem_width),
            ACTIVATIONS[act](),
            *([nn.MaxPool2d(2)] if stem_pool else []),
        )
        stages, in_ch = [], stem_width
        for i, (width, depth) in enumerate(zip(widths, blocks)):
            halve = i > 0
            layers = [nn.MaxPool2d(2)] if halve and downsample == "pool" else []
            for j in range(depth):
                stride = 2 if halve and j == 0 and downsample == "stride" else 1
                layers.append(ResidualBlock(in_ch, width, stride=stride, act=act, norm=norm))
                in_ch = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1) if head == "avg" else nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        convs = [m for m in self.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad]
        with torch.no_grad():
            for conv in convs:
                if init == "dirac":  # PyTorch's default init, then an identity in the first filters (airbench)
                    nn.init.dirac_(conv.weight[: min(conv.in_channels, conv.out_channels)])
                else:
                    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if init == "zero_last":
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.zeros_(m.bn2.weight)

    @property
    def whiten(self) -> PatchWhitening | None:
        return self.stem[0] if isinstance(self.stem[0], PatchWhitening) else None

    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation (the whitening layer, if any) from normalised training images."""
        if self.whiten is not None:
            self.whiten.init_from_data(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C, H', W')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))  # (B, C)
        return x if pre_logits else self.fc(x) * self.logit_scale

    def architecture(self, image_size: int = 32) -> dict:
        """The assignment's description of this network, read off its modules: ``N`` residual layers (stages), and
        per layer ``B`` blocks, ``C`` channels, ``F`` the blocks' conv kernel, ``K`` the skip's kernel (0: identity
        skips only), the resolution in and out, trainable parameters and how it halves the resolution; ``P`` the
        final pool's kernel (the last map's side); the stem, the head, and what the blocks compute (``F``'s inner
        activation, whether BatchNorm weights learn)."""
        sizes: dict[int, tuple[int, int]] = {}
        probe = copy.deepcopy(self).cpu().float().eval()
        hooks = [stage.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, (i[0].shape[-1], o.shape[-1])))
                 for k, stage in enumerate(probe.stages)]  # fmt: skip
        with torch.no_grad():
            probe(torch.zeros(1, 3, image_size, image_size))
        for h in hooks:
            h.remove()
        trainable = lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad)  # noqa: E731
        layers = []
        for k, stage in enumerate(self.stages):
            blocks = [m for m in stage if isinstance(m, ResidualBlock)]
            skips = [b.shortcut[0].kernel_size[0] for b in blocks if isinstance(b.shortcut, nn.Sequential)]
            halving = "max-pool" if any(isinstance(m, nn.MaxPool2d) for m in stage) else (
                "stride 2" if blocks and blocks[0].conv1.stride[0] == 2 else "none")  # fmt: skip
            layers.append({
                "blocks": len(blocks), "channels": blocks[-1].conv2.out_channels,
                "conv_kernel": blocks[0].conv1.kernel_size[0], "skip_kernel": max(skips, default=0),
                "in_size": sizes[k][0], "out_size": sizes[k][1], "params": trainable(stage), "downsample": halving,
            })  # fmt: skip
        stem_convs = [m for m in self.stem if isinstance(m, nn.Conv2d) and not isinstance(m, StridedConv1x1)]
        stem_conv = [c for c in stem_convs if c.weight.requires_grad]
        norms = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        first = next(m for m in self.modules() if isinstance(m, ResidualBlock))
        return {
            "N": len(layers),
            "layers": layers,
            "P": layers[-1]["out_size"] if layers else image_size,
            "stem": {
                "channels": stem_conv[-1].out_channels if stem_conv else None,
                "kernel": stem_conv[-1].kernel_size[0] if stem_conv else None,
                "whitening": self.whiten is not None,
                "pool": any(isinstance(m, nn.MaxPool2d) for m in self.stem),
                "params": trainable(self.stem),
            },
            "block": {
                "inner_activation": "GELU" if isinstance(first.act, nn.GELU) else "ReLU",
                "norm_weights": "learned" if all(n.weight.requires_grad for n in norms) else "frozen at 1",
            },
            "head": {
                "pool": "max" if isinstance(self.pool, nn.AdaptiveMaxPool2d) else "average",
                "logit_scale": self.logit_scale,
            },
            "head_params": trainable(self.fc),
            "trainable_params": trainable(self),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(cls: type[nn.Module], model_args: dict, kwargs: dict) -> nn.Module:
    """The builders' shared body: drop the keys timm's factory always passes, merge the variant's args
    with the caller's overrides, build ``cls``."""
    for key in ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return cls(**{**model_args, **kwargs})


def build_resnet(model_args: dict, kwargs: dict) -> CifarResNet:
    return build(CifarResNet, model_args, kwargs)
