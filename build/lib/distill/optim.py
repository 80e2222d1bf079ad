"""The optimiser and its learning-rate schedule, from a recipe's ``train`` section.

Both come from timm: :func:`timm.optim.create_optimizer_v2` over three parameter groups (optionally in
timm's Lookahead), and :class:`StepSchedule`, which drives a per-update
:class:`~timm.scheduler.CosineLRScheduler` or linear :class:`~timm.scheduler.PolyLRScheduler` and the
lookahead's alpha.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler, PolyLRScheduler
from torch import nn

if TYPE_CHECKING:
    from distill.recipe import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, filter_bias_and_bn: bool, norm_bias_lr_scale: float) -> list:
    """Trainable parameters in three groups: weights, other biases and norm weights, BatchNorm biases.

    With ``filter_bias_and_bn`` (timm's default) only the weights decay. Without it everything decays
    (airbench's way), BatchNorm biases at ``weight_decay / norm_bias_lr_scale`` so that their decay per
    step (LR x decay) equals the weights'. ``norm_bias_lr_scale`` multiplies the BatchNorm biases' LR
    (airbench: 64); timm's schedulers honour a group's ``lr_scale``.
    """
    weights, others, norm_biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and name == "bias":
                norm_biases.append(p)
            elif p.ndim <= 1 or name == "bias":
                others.append(p)
            else:
                weights.append(p)
    other_decay = 0.0 if filter_bias_and_bn else weight_decay
    groups = [
        {"params": weights, "weight_decay": weight_decay},
        {"params": others, "weight_decay": other_decay},
        {"params": norm_biases, "weight_decay": other_decay / norm_bias_lr_scale, "lr_scale": norm_bias_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Nesterov SGD (or momentum SGD, or AdamW), optionally in timm's Lookahead (k = 6, alpha = 0.5)."""
    name = "adamw" if cfg.optimizer == "adamw" else ("sgd" if cfg.nesterov else "momentum")
    name = f"lookahead_{name}" if cfg.lookahead else name
    extra = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    groups = param_groups(model, cfg.weight_decay, cfg.filter_bias_and_bn, cfg.norm_bias_lr_scale)
    return create_optimizer_v2(groups, opt=name, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


class StepSchedule:
    """What changes with every optimiser update: the LR (a timm scheduler) and, with lookahead, its alpha.

    The LR rises linearly from ``warmup_from x lr`` to ``lr`` over the warm-up, then decays (cosine or
    linear) to ``lr_min``. With ``lookahead_ramp`` = p > 0 the slow weights' step falls from 1 (no
    lookahead) to ``lookahead_alpha`` as (step / total)^p: airbench's "lookahead EMA", which averages
    strongly only at the end. ``step_update(n)`` sets both for update n + 1.
    """

    def __init__(self, cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int):
        warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps - 1)
        common = dict(
            t_initial=max(total_steps - warmup, 1),
            warmup_t=warmup,
            warmup_lr_init=cfg.lr * cfg.warmup_from,
            warmup_prefix=True,
            t_in_epochs=False,
            lr_min=cfg.lr_min,
        )
        if cfg.schedule == "cosine":
            self.lr = CosineLRScheduler(optimizer, **common)
        else:
            self.lr = PolyLRScheduler(optimizer, power=1.0, **common)
        self.optimizer, self.total_steps, self.cfg = optimizer, total_steps, cfg

    def lookahead_alpha(self, step: int) -> float:
        cfg = self.cfg
        if not cfg.lookahead_ramp:
            return cfg.lookahead_alpha
        return 1.0 - (1.0 - cfg.lookahead_alpha) * min(step / self.total_steps, 1.0) ** cfg.lookahead_ramp

    def step_update(self, num_updates: int) -> None:
        self.lr.step_update(num_updates=num_updates)
        if self.cfg.lookahead:
            alpha = self.lookahead_alpha(num_updates)
            for group in self.optimizer.param_groups:
                group["lookahead_alpha"], group["lookahead_k"] = alpha, self.cfg.lookahead_k
