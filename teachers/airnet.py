"""A fast teacher family: airbench's conv groups, widths and depth as variants.

Descends from Keller Jordan's airbench (github.com/KellerJordan/cifar10-airbench, airbench94/95/96),
reimplemented from its description: a frozen 2x2 patch-whitening conv (24 channels) and GELU, then
three conv groups, each ``conv -> 2x2 max-pool -> BN -> GELU`` followed by either one more
``conv -> BN -> GELU`` (airbench94/95) or residual pairs ``x + BN(conv(GELU(BN(conv(x)))))`` then
GELU (airbench96); a global max-pool and a bias-free linear head whose logits are scaled by 1/9.
BatchNorm weights are frozen at 1 (only the biases learn); every 3x3 conv starts as a partial
identity (Dirac) so the net begins close to a shallow one.

Teachers have no parameter cap and need not be residual networks of the assignment's block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from students.resnet import PatchWhitening, build, check_ranges


def _conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, 3, padding="same", bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(in_ch, out_ch)])  # an implicit residual: the first outputs copy the inputs
    return conv


def _norm(channels: int, momentum: float) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    bn.weight.requires_grad_(False)  # frozen at 1: the conv weights carry the scale
    return bn


class ConvGroup(nn.Module):
    """``conv -> pool -> BN -> GELU``, then one plain ``conv -> BN -> GELU`` (``convs=2``) or
    ``(convs - 1) / 2`` residual pairs ``GELU(x + BN(conv(GELU(BN(conv(x))))))`` (``convs=3, 5, ...``)."""

    def __init__(self, in_ch: int, out_ch: int, convs: int = 2, bn_momentum: float = 0.4):
        super().__init__()
        if convs < 2 or (convs > 2 and convs % 2 == 0):
            raise ValueError(f"convs per group must be 2 or odd >= 3, got {convs}")
        self.conv1 = _conv(in_ch, out_ch)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _norm(out_ch, bn_momentum)
        self.residual = convs > 2
        count = 1 if convs == 2 else convs - 1
        self.convs = nn.ModuleList(_conv(out_ch, out_ch) for _ in range(count))
        self.norms = nn.ModuleList(_norm(out_ch, bn_momentum) for _ in range(count))
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        if not self.residual:
            return self.act(self.norms[0](self.convs[0](x)))
        for i in range(0, len(self.convs), 2):
            y = self.act(self.norms[i](self.convs[i](x)))
            x = self.act(x + self.norms[i + 1](self.convs[i + 1](y)))
        return x


class AirNet(nn.Module):
    """Whitening stem and three :class:`ConvGroup` s (32 -> 15 -> 7 -> 3 pixels), global max-pool, scaled linear head.

    Args:
        widths: channels of the three groups.
        convs: 3x3 convs per group (2: airbench94/95; 3: airbench96, a residual over the last two).
        num_classes: outputs of the head.
        logit_scale: the head's logits are multiplied by this (airbench: 1/9).
        bn_momentum: PyTorch BatchNorm momentum (airbench94: 0.4, i.e. its "0.6").
        whiten_eps: the whitening stem's eigenvalue floor (airbench: 5e-4; larger amplifies pixel noise less).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 256, 256),
        convs: int = 2,
        num_classes: int = 10,
        in_chans: int = 3,
        logit_scale: float = 1 / 9,
        bn_momentum: float = 0.4,
        drop_rate: float = 0.0,
        whiten_eps: float = 5e-4,
    ):
        super().__init__()
        check_ranges(logit_scale=logit_scale, bn_momentum=bn_momentum, whiten_eps=whiten_eps, drop_rate=drop_rate)
        self.num_classes = num_classes
        self.num_features = widths[-1]
        self.logit_scale = logit_scale
        whiten = PatchWhitening(in_chans, kernel_size=2, eps=whiten_eps)
        self.stem = nn.Sequential(whiten, nn.GELU())
        groups, in_ch = [], whiten.out_chans
        for width in widths:
            groups.append(ConvGroup(in_ch, width, convs, bn_momentum))
            in_ch = width
        self.stages = nn.Sequential(*groups)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_ch, num_classes, bias=False)

    @property
    def whiten(self) -> PatchWhitening:
        return self.stem[0]

    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the whitening filters from normalised training images (B, C, H, W)."""
        self.whiten.init_from_data(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C, 3, 3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))  # (B, C)
        return x if pre_logits else self.fc(x) * self.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build_airnet(model_args: dict, kwargs: dict) -> AirNet:
    return build(AirNet, model_args, kwargs)
