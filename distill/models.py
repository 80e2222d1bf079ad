"""Building models by name, and the rules the app applies to them: the 5M cap and FLOP counting.

The model files (``students/``, ``teachers/``) hold modules and timm builders only; importing them
registers every model with timm. This module builds one from a recipe's ``model`` section, turns a
bad name or argument into one line, and checks a student against the competition's cap.
"""

from __future__ import annotations

import copy

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import students  # noqa: F401  (registers the students with timm)
import teachers  # noqa: F401  (registers the teachers with timm)
from distill.errors import UserError

PARAM_CAP = 5_000_000  # the competition's hard limit on a student's trainable parameters


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_param_cap(model: nn.Module, name: str, cap: int = PARAM_CAP) -> int:
    """The trainable parameter count of a student; a UserError naming it when over ``cap``."""
    n = count_trainable(model)
    if n > cap:
        raise UserError(
            f"student '{name}' has {n:,} trainable parameters, over the {cap:,} cap; "
            f"use smaller model.kwargs (widths, blocks) or another student"
        )
    return n


def create_model(name: str, kwargs: dict | None = None, student: bool = False, num_classes: int = 10) -> nn.Module:
    """Build ``name`` from timm's registry with ``kwargs`` (a recipe's ``model`` section); a student is
    checked against the cap."""
    if not timm.is_model(name):
        known = ", ".join(timm.list_models("cifar_*"))
        raise UserError(f"unknown model.name '{name}'; registered here: {known}")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **(kwargs or {}))
    except (TypeError, ValueError) as err:
        raise UserError(f"bad model.kwargs for '{name}': {err}") from None
    if student:
        check_param_cap(model, name)
    return model


def count_flops(model: nn.Module, image_size: int = 32, in_chans: int = 3) -> dict[str, float]:
    """FLOPs per image of one forward pass and of one training step (forward + backward).

    Counted by PyTorch's :class:`~torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix
    products; a multiply-add is 2 FLOPs; BatchNorm, activations and pooling are not counted) on a copy
    of the model in train mode, so frozen weights (a whitening stem) get no weight gradient. Returns
    ``{"forward": ..., "train_step": ...}``; divide the training step by seconds per image for the
    achieved FLOP/s.
    """
    probe = copy.deepcopy(model).cpu().float().train()
    x = torch.randn(2, in_chans, image_size, image_size)
    with FlopCounterMode(display=False) as forward:
        out = probe(x)
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    return {
        "forward": forward.get_total_flops() / 2,
        "train_step": (forward.get_total_flops() + backward.get_total_flops()) / 2,
    }


def architecture(model: nn.Module, image_size: int = 32) -> dict:
    """The assignment's description of a residual network, read off the built ``model`` (not its name):
    ``N`` residual layers (stages), and per layer ``B`` blocks, ``C`` channels, ``F`` the blocks' conv
    kernel size, ``K`` the skip connection's kernel size (0 for identity skips only), its input and output
    resolution and trainable parameters; ``P`` the final average pool's kernel (the last feature map's side).

    Needs a model with ``stem`` and ``stages`` of residual blocks (``conv1``, ``shortcut``), as
    :class:`students.resnet.CifarResNet`; raises ValueError for any other.
    """
    stages = getattr(model, "stages", None)
    if stages is None or not hasattr(model, "stem"):
        raise ValueError(f"{type(model).__name__} has no stem and stages of residual blocks to describe")
    sizes: dict[int, tuple[int, int]] = {}
    probe = copy.deepcopy(model).cpu().float().eval()
    hooks = [
        stage.register_forward_hook(lambda m, i, o, k=k: sizes.__setitem__(k, (i[0].shape[-1], o.shape[-1])))
        for k, stage in enumerate(probe.stages)
    ]
    with torch.no_grad():
        probe(torch.zeros(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    layers = []
    for k, stage in enumerate(stages):
        blocks = [m for m in stage if hasattr(m, "conv1") and hasattr(m, "shortcut")]
        skips = [b.shortcut[0].kernel_size[0] for b in blocks if isinstance(b.shortcut, nn.Sequential)]
        layers.append(
            {
                "blocks": len(blocks),
                "channels": blocks[-1].conv2.out_channels,
                "conv_kernel": blocks[0].conv1.kernel_size[0],
                "skip_kernel": max(skips, default=0),
                "in_size": sizes[k][0],
                "out_size": sizes[k][1],
                "params": count_trainable(stage),
                "downsample": "max-pool" if any(isinstance(m, nn.MaxPool2d) for m in stage) else (
                    "stride 2" if blocks and blocks[0].conv1.stride[0] == 2 else "none"),
            }
        )  # fmt: skip
    stem_convs = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    return {
        "N": len(layers),
        "layers": layers,
        "P": layers[-1]["out_size"] if layers else image_size,
        "stem": {
            "channels": stem_convs[-1].out_channels if stem_convs else None,
            "kernel": stem_convs[-1].kernel_size[0] if stem_convs else None,
            "whitening": any(type(m).__name__ == "PatchWhitening" for m in model.stem),
            "pool": any(isinstance(m, nn.MaxPool2d) for m in model.stem),
            "params": count_trainable(model.stem),
        },
        "head_params": count_trainable(model.fc) if hasattr(model, "fc") else 0,
        "trainable_params": count_trainable(model),
    }
