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
from students.resnet import PatchWhitening

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


def train_whitening_bias(model: nn.Module, trains: bool) -> int:
    """Let the whitening stems' biases train, or hold them as they are (``train.whiten_bias_epochs``); the number of
    stems. A held bias leaves nothing before the first trainable conv to differentiate, so its input gradient, a
    full-resolution convolution, is not computed."""
    stems = [m for m in model.modules() if isinstance(m, PatchWhitening)]
    for stem in stems:
        stem.conv.bias.requires_grad_(trains)
    return len(stems)


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
    """The assignment's description of a student, as its class gives it (:meth:`CifarResNet.architecture`): N
    residual layers with B_i, C_i, F_i, K_i, sizes and parameters, P, the stem, the block and the head.

    Raises ValueError for a model that is no residual network of the assignment's block (a teacher)."""
    describe = getattr(model, "architecture", None)
    if describe is None:
        raise ValueError(f"{type(model).__name__} has no stem and stages of residual blocks to describe")
    return describe(image_size)
