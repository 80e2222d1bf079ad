"""Where a stage computes and in what arithmetic: the one setup of training, caching, evaluation, export and the
shift suite.

:class:`Compute` resolves a recipe's ``train.mixed_precision`` *setting* (``auto``, ``no``, ``bf16``, ``fp16``)
on a device into the *mode* it computes in (:class:`~distill.precision.Precision`), and sets the host up for it
(glibc keeps freed memory on a CPU, :mod:`distill.host`; cuDNN picks its kernels once on a GPU). Training gets
its Accelerator from it (:func:`distill.devices.make_accelerator`); everything that predicts outside an
Accelerator takes one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from distill.host import keep_freed_memory
from distill.precision import Precision, autocast, resolve_precision


@dataclass(frozen=True)
class Compute:
    device: torch.device
    precision: Precision  # the resolved mode and why

    @classmethod
    def resolve(cls, setting: str = "auto", device: torch.device | None = None) -> Compute:
        """The setup for a ``train.mixed_precision`` setting on ``device`` (default: the GPU if there is one)."""
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        else:
            keep_freed_memory()  # a step's activations are reused, not mapped and faulted in again
        return cls(device, resolve_precision(setting, device.type))

    @property
    def mode(self) -> str:
        """Accelerate's name of the arithmetic: ``no`` (float32), ``bf16`` or ``fp16``."""
        return self.precision.mode

    def autocast(self):
        """The autocast context of this setup (none for float32)."""
        return autocast(self.mode, self.device)
