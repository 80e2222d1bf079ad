"""Which arithmetic a run uses: ``train.mixed_precision`` resolved for the device at hand.

``auto`` (the default) is bf16 autocast on a GPU and on a CPU that computes bf16 natively (AVX512-BF16
or AMX on x86, the BF16 extension on Arm), and float32 on other CPUs, where bf16 is emulated and slower
than float32. ``no`` and ``bf16`` force one or the other anywhere; ``fp16`` is for GPUs. Training (through
Accelerate), caching, evaluation and export all resolve it here, so they compute alike.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.errors import UserError

SETTINGS = ("auto", "no", "bf16", "fp16")
# CPU flags, as /proc/cpuinfo names them, that mean native bf16 arithmetic
NATIVE_BF16_FLAGS = {"x86_64": ("avx512_bf16", "amx_bf16"), "aarch64": ("bf16",)}


def cpu_flags_bf16(cpuinfo: str, machine: str) -> str | None:
    """The native-bf16 flag in the text of ``/proc/cpuinfo`` of a ``machine`` (``x86_64``, ``aarch64``), or None."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / Arm
            flags.update(value.split())
    return next((f for f in NATIVE_BF16_FLAGS.get(machine, ()) if f in flags), None)


@functools.lru_cache(maxsize=1)
def cpu_bf16_feature() -> str | None:
    """The flag of this CPU that makes bf16 native (``"avx512_bf16"``, ``"amx_bf16"``, ``"bf16"``), or None.

    Read from ``/proc/cpuinfo`` on Linux and ``sysctl hw.optional.arm.FEAT_BF16`` on Apple silicon; any
    other platform counts as without.
    """
    machine = platform.machine().lower().replace("arm64", "aarch64").replace("amd64", "x86_64")
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
        except OSError:
            return None
        return "bf16" if out.stdout.strip() == "1" else None
    try:
        return cpu_flags_bf16(Path("/proc/cpuinfo").read_text(), machine)
    except OSError:
        return None


@dataclass(frozen=True)
class Precision:
    """What ``train.mixed_precision`` resolved to on one device (Accelerate's name for it) and why."""

    mode: str  # "no" (float32), "bf16" or "fp16"
    why: str

    @property
    def label(self) -> str:
        """``"bf16 (auto: this CPU has avx512_bf16)"``: the run's header says it."""
        return f"{'fp32' if self.mode == 'no' else self.mode} ({self.why})"


def resolve_precision(setting: str, device_type: str) -> Precision:
    """``train.mixed_precision`` on a ``"cuda"`` or ``"cpu"`` device: ``auto`` picks, anything else is forced."""
    if device_type == "cuda":
        return Precision("bf16", "auto: GPU") if setting == "auto" else Precision(setting, "recipe")
    if setting == "fp16":
        raise UserError(
            "train.mixed_precision=fp16 needs a GPU; on a CPU use auto (bf16 where the CPU has it natively) or bf16"
        )
    if setting != "auto":
        return Precision(setting, "recipe")
    feature = cpu_bf16_feature()
    if feature:
        return Precision("bf16", f"auto: this CPU has {feature}")
    return Precision("no", "auto: this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16)")


NS_SETTINGS = ("auto", "bf16", "fp32")


def resolve_ns_precision(setting: str, device_type: str) -> str:
    """``train.muon_ns_precision`` on a ``"cuda"`` or ``"cpu"`` device: the dtype of Muon's Newton-Schulz matmuls.

    ``auto`` is ``"bf16"`` (PyTorch's Muon as it is) on a GPU and on a CPU that computes bf16 natively, and
    ``"fp32"`` on other CPUs, where a bf16 matmul is emulated: there a (256, 2304) filter bank's three iterations took
    40x the seconds of float32's (847 ms), 2.8 s of each step of a 2.0M student (BENCHMARKS.md, "Muon's Newton-Schulz in fp32").
    """
    if setting != "auto":
        return setting
    return "bf16" if device_type == "cuda" or cpu_bf16_feature() else "fp32"


def autocast(mode: str, device: torch.device):
    """The autocast context of ``mode`` (a :class:`Precision` mode) on ``device``, outside an Accelerator."""
    if mode == "no":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mode == "bf16" else torch.float16)
