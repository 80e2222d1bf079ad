"""The optimiser and its learning-rate schedule, from a recipe's ``train`` section.

Both come from timm and PyTorch: :func:`timm.optim.create_optimizer_v2` over three parameter groups (optionally
in timm's Lookahead), or :class:`FilterMuon` (``train.optimizer: muon``: PyTorch's Muon on the conv filters,
Nesterov SGD on the rest, airbench94_muon's split), and :class:`StepSchedule`, which drives a per-update
:class:`~timm.scheduler.CosineLRScheduler` or linear :class:`~timm.scheduler.PolyLRScheduler` and the
lookahead's alpha.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from timm.optim import Lookahead, create_optimizer_v2
from timm.scheduler import CosineLRScheduler, PolyLRScheduler
from torch import nn
from torch.optim.sgd import sgd

from distill.errors import UserError
from distill.precision import resolve_ns_precision

if TYPE_CHECKING:
    from distill.recipe import TrainConfig


def param_groups(
    model: nn.Module, weight_decay: float, filter_bias_and_bn: bool, norm_bias_lr_scale: float, exclude=frozenset()
) -> list:
    """Trainable parameters in three groups: weights, other biases and norm weights, BatchNorm biases.

    With ``filter_bias_and_bn`` (timm's default) only the weights decay. Without it everything decays
    (airbench's way), BatchNorm biases at ``weight_decay / norm_bias_lr_scale`` so that their decay per
    step (LR x decay) equals the weights'. ``norm_bias_lr_scale`` multiplies the BatchNorm biases' LR
    (airbench: 64); timm's schedulers honour a group's ``lr_scale``. Parameters whose ``id`` is in ``exclude``
    (another optimiser's) are left out.
    """
    weights, others, norm_biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in exclude:
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
    """Nesterov SGD (or momentum SGD, AdamW, or Muon on the filters), optionally in timm's Lookahead."""
    if cfg.optimizer == "muon":
        return make_muon(model, cfg)
    name = "adamw" if cfg.optimizer == "adamw" else ("sgd" if cfg.nesterov else "momentum")
    name = f"lookahead_{name}" if cfg.lookahead else name
    extra = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    groups = param_groups(model, cfg.weight_decay, cfg.filter_bias_and_bn, cfg.norm_bias_lr_scale)
    return create_optimizer_v2(groups, opt=name, lr=cfg.lr, weight_decay=cfg.weight_decay, **extra)


# Muon ------------------------------------------------------------------------------------------------------------


def filter_matrix(t: torch.Tensor) -> torch.Tensor:
    """A filter bank (out, in, k, k), or any (out, ...) tensor, as an (out, in x k x k) matrix *view* of its storage.

    A channels-last filter bank is laid out (out, k, k, in): its view takes the columns in that order. A
    permutation of the columns commutes with the orthogonalisation (``(G P)(G P)^T = G G^T``), so a parameter,
    its gradient and its momentum are each viewed in their own layout's order and the update lands where it
    belongs; :meth:`FilterMuon._init_group` checks that the three agree.
    """
    if t.ndim == 2 or t.is_contiguous():
        return t.view(len(t), -1)
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(len(t), -1)
    raise ValueError(f"Muon needs a contiguous or channels-last filter bank; got strides {t.stride()}")


def _layout(t: torch.Tensor) -> str:
    return "rows" if t.ndim == 2 or t.is_contiguous() else "channels_last"


class FilterMuon(torch.optim.Muon):
    """:class:`torch.optim.Muon` on conv filter banks as matrices, and Nesterov SGD on the groups marked ``muon: False``.

    What PyTorch's Muon lacks and this adds (its momentum, Newton-Schulz orthogonalisation, learning-rate
    adjustment and decoupled decay run as they are):

    - filter banks: a (out, in, k, k) parameter is stepped as its (out, in x k x k) matrix (:func:`filter_matrix`),
      as airbench94_muon does; PyTorch's Muon refuses any parameter that is not 2-D;
    - ``normalize``: before each step a filter bank is scaled to norm sqrt(out) (airbench94_muon's projection:
      with BatchNorm after every conv only a filter's direction matters, and a fixed norm fixes the step's
      relative size, so no weight decay is needed);
    - the other parameters (BatchNorm biases, the head, the whitening bias) in groups with ``muon: False``, stepped
      by PyTorch's functional SGD (``momentum``, ``nesterov``, coupled ``weight_decay``), so that one optimiser
      holds the whole model for Accelerate, the schedule and checkpoints.

    - ``ns_precision="fp32"``: the Newton-Schulz iterations in float32, where PyTorch's run in bf16 (a CPU without
      native bf16 emulates it: 40x float32's seconds there); the step is otherwise PyTorch's, line for line
      (:meth:`_fp32_muon_step`).

    PyTorch's Muon keeps its momentum as an average (``buf = mu buf + (1 - mu) g``) where airbench sums it
    (``buf = mu buf + g``); the two differ by a factor that the orthogonalisation's normalisation removes.
    """

    def __init__(self, groups: list[dict], lr: float, momentum: float, nesterov: bool, ns_steps: int,
                 normalize: bool, weight_decay: float = 0.0, ns_precision: str = "bf16"):  # fmt: skip
        if ns_precision not in ("bf16", "fp32"):
            raise ValueError(f"ns_precision must be 'bf16' or 'fp32', not {ns_precision!r}")
        self.ns_precision = ns_precision
        probe = torch.zeros(1, 1, requires_grad=True)  # Muon's defaults as this PyTorch spells them
        defaults = torch.optim.Muon([probe], lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                                    ns_steps=ns_steps).defaults  # fmt: skip
        defaults.update(muon=True, normalize=normalize)
        torch.optim.Optimizer.__init__(self, groups, defaults)  # Muon.__init__ would refuse the 4-D filter banks
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon steps matrices and filter banks; a 1-D parameter belongs in a muon=False group")

    def _init_group(self, group, params_with_grad, grads, muon_momentum_bufs) -> bool:
        """Muon's groups only, each parameter, gradient and momentum as a matrix view (SGD's groups: none)."""
        if not group["muon"]:
            return False
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            grad = p.grad if _layout(p.grad) == _layout(p) else p.grad.contiguous(memory_format=_format(p))
            if _layout(buf) != _layout(p):  # a buffer restored from a checkpoint in the other layout
                buf = state["momentum_buffer"] = buf.contiguous(memory_format=_format(p))
            params_with_grad.append(filter_matrix(p))
            grads.append(filter_matrix(grad))
            muon_momentum_bufs.append(filter_matrix(buf))
        return False

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["muon"] and group["normalize"]:
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(len(p) ** 0.5 / p.norm().clamp(min=1e-12))
        if self.ns_precision == "bf16":
            loss = super().step(closure)  # Muon's step, over the matrix views of the muon groups
        else:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                self._fp32_muon_step(group)
        for group in self.param_groups:
            if not group["muon"]:
                self._sgd_step(group)
        return loss

    def _fp32_muon_step(self, group: dict) -> None:
        """PyTorch's single-tensor Muon step (momentum, Nesterov, decoupled decay, its LR adjustment) with the
        Newton-Schulz iterations in float32 (:func:`newton_schulz`)."""
        params, grads, bufs = [], [], []
        self._init_group(group, params, grads, bufs)
        if group.get("adjust_lr_fn") not in (None, "original"):
            raise ValueError("ns_precision='fp32' adjusts the LR as PyTorch's Muon does by default ('original') only")
        for p, grad, buf in zip(params, grads, bufs):
            buf.lerp_(grad, 1 - group["momentum"])
            update = grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
            update = newton_schulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"])
            rows, cols = p.shape
            p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(update, alpha=-group["lr"] * max(1.0, rows / cols) ** 0.5)

    def _sgd_step(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        sgd(
            params, [p.grad for p in params], bufs, weight_decay=group["weight_decay"], momentum=group["momentum"],
            lr=group["lr"], dampening=0.0, nesterov=group["nesterov"], maximize=False,
        )  # fmt: skip
        for p, buf in zip(params, bufs):
            self.state[p]["momentum_buffer"] = buf


def newton_schulz(g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration of a matrix, as PyTorch's Muon runs it, but in float32: the update
    with its singular values pushed into about (0.5, 1.5)."""
    a, b, c = coefficients
    tall = len(g) > g.shape[1]  # iterated on its transpose, so that the Gram matrix is the smaller side's
    x = g.float().T if tall else g.float()
    x = x / x.norm().clamp(min=eps)  # spectral norm at most 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(g.dtype)


def _format(t: torch.Tensor) -> torch.memory_format:
    return torch.contiguous_format if _layout(t) == "rows" else torch.channels_last


def make_muon(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """airbench94_muon's split: Muon on every trainable filter bank (4-D), SGD's three groups on the rest.

    The SGD groups are :func:`param_groups`' (``train.lr``, ``momentum``, ``weight_decay``,
    ``norm_bias_lr_scale``); the filters take ``train.muon_lr``, as ``lr_scale`` of ``train.lr`` so that the
    schedule moves both alike, with ``muon_momentum``, ``muon_ns_steps``, ``muon_normalize``,
    ``muon_weight_decay`` (decoupled) and ``muon_ns_precision`` (resolved on the model's device).
    """
    if not hasattr(torch.optim, "Muon"):
        raise UserError(f"train.optimizer=muon needs PyTorch >= 2.9 (this is {torch.__version__}): upgrade torch, "
                   "or use train.optimizer=sgd")  # fmt: skip
    filters = {id(p) for m in model.modules() if isinstance(m, nn.Conv2d)
               for p in [m.weight] if p.requires_grad and p.ndim == 4}  # fmt: skip
    sgd = param_groups(model, cfg.weight_decay, cfg.filter_bias_and_bn, cfg.norm_bias_lr_scale, exclude=filters)
    groups = [dict(g, muon=False, momentum=cfg.momentum, nesterov=cfg.nesterov) for g in sgd]
    muon_params = [p for p in model.parameters() if id(p) in filters]
    if muon_params:
        groups.append(dict(params=muon_params, muon=True, lr_scale=cfg.muon_lr / cfg.lr,
                           weight_decay=cfg.muon_weight_decay))  # fmt: skip
    device = next(model.parameters()).device.type
    optimizer = FilterMuon(groups, lr=cfg.muon_lr, momentum=cfg.muon_momentum, nesterov=cfg.nesterov,
                           ns_steps=cfg.muon_ns_steps, normalize=cfg.muon_normalize,
                           ns_precision=resolve_ns_precision(cfg.muon_ns_precision, device))  # fmt: skip
    for group in optimizer.param_groups:  # each group's LR now; the schedule's base is train.lr, times lr_scale
        group["lr"], group["initial_lr"] = cfg.lr * group.get("lr_scale", 1.0), cfg.lr
    return Lookahead(optimizer) if cfg.lookahead else optimizer


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
