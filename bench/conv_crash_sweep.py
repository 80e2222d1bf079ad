"""Which CPU convolutions crash PyTorch's backward pass: a sweep, each shape in a child process of its own.

    python bench/conv_crash_sweep.py [--batches 1-64] [--json out.json]

Issue 20 found a native crash ("double free or corruption", SIGSEGV) in the backward pass of a channels-last
1x1 stride-2 convolution with 8 input channels at batch sizes 5, 13, 45 and 49 (PyTorch 2.14.1, this CPU):
``cifar_resnet_tiny``'s shortcut, met by a ragged last batch. Each case here is forked from a parent that
has only imported torch, runs one forward and backward of ``Conv2d(cin, cout, k, stride)`` on a
(batch, cin, 16, 16) input in ``--threads`` threads (default: all cores; in one thread nothing crashed), and exits; the parent reads how it ended. Prints the crashing
cases grouped by shape, and writes them all with ``--json``. What the project does about them:
:func:`students.resnet.cpu_safe_memory_format` and ``tests/test_native_crash.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
from pathlib import Path

import torch


def run_case(
    batch: int, cin: int, cout: int, kernel: int, stride: int, channels_last: bool, bf16: bool, threads: int = 2
) -> str:
    """``"ok"`` or how the child died (``"SIGSEGV"``, ``"SIGABRT"``, ``"exit 3"``)."""
    pid = os.fork()
    if pid == 0:  # the child: one forward and backward, then out without cleanup
        code = 0
        try:
            torch.set_num_threads(threads)  # the crash needs the multi-threaded kernel: 1 thread never crashed
            torch.manual_seed(0)
            conv = torch.nn.Conv2d(cin, cout, kernel, stride=stride, bias=False)
            x = torch.randn(batch, cin, 16, 16)
            if channels_last:
                conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                y = conv(x)
            y.float().sum().backward()
        except Exception:  # noqa: BLE001  (a Python error is a result too)
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return "ok" if os.WEXITSTATUS(status) == 0 else f"exit {os.WEXITSTATUS(status)}"


def sweep(batches: range, threads: int, channels=(3, 8, 16, 32), kernels=(1, 3), strides=(1, 2)) -> list[dict]:
    cases = []
    for cin, kernel, stride, cl, bf16 in itertools.product(channels, kernels, strides, (True, False), (False, True)):
        for batch in batches:
            outcome = run_case(batch, cin, 2 * cin, kernel, stride, cl, bf16, threads)
            cases.append(dict(batch=batch, cin=cin, cout=2 * cin, kernel=kernel, stride=stride, channels_last=cl,
                              bf16=bf16, outcome=outcome))  # fmt: skip
    return cases


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description="Sweep CPU convolution shapes for native crashes in backward.")
    parser.add_argument("--batches", default="1-64", help="batch sizes, as LO-HI (default 1-64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    lo, _, hi = args.batches.partition("-")
    cases = sweep(range(int(lo), int(hi or lo) + 1), args.threads)
    crashed = [c for c in cases if c["outcome"] != "ok"]
    groups: dict[tuple, list[int]] = {}
    for c in crashed:
        key = (c["cin"], c["cout"], c["kernel"], c["stride"], c["channels_last"], c["bf16"], c["outcome"])
        groups.setdefault(key, []).append(c["batch"])
    print(f"torch {torch.__version__}, {args.threads} threads: {len(crashed)} of {len(cases)} cases crashed")
    for (cin, cout, k, s, cl, bf16, outcome), batches in sorted(groups.items()):
        layout = "channels-last" if cl else "NCHW"
        print(f"  {cin}->{cout} {k}x{k} stride {s} {layout} {'bf16' if bf16 else 'fp32'}: {outcome} at batch {batches}")
    if args.json:
        args.json.write_text(
            json.dumps({"torch": torch.__version__, "threads": args.threads, "cases": cases}, indent=1)
        )
    return cases


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
