"""Issue 20's native crash: a channels-last 1x1 stride-2 convolution's CPU backward at odd batch sizes.

PyTorch 2.14.1 on this CPU corrupts the heap ("double free or corruption", SIGSEGV) in that backward with 8
input channels and 2 threads (``bench/conv_crash_sweep.py``). The students' shortcut
(:class:`students.resnet.StridedConv1x1`) subsamples first on a CPU; these runs, each in a subprocess of its
own so that a crash fails the test instead of killing pytest, are the sizes that crashed.
"""

from __future__ import annotations

import pytest
import torch

from students.resnet import StridedConv1x1
from tests.conftest import python, tiny

BLOCK = """
import sys, torch
from students.resnet import ResidualBlock
torch.manual_seed(0)
block = ResidualBlock(8, 16, stride=2).to(memory_format=torch.channels_last)
for batch in map(int, sys.argv[1:]):
    x = torch.randn(batch, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=batch % 2 == 1):
        y = block(x)
    y.float().sum().backward()
print("ok")
"""


def test_the_shortcut_survives_the_sizes_that_crashed():
    proc = python("-c", BLOCK, "1", "3", "5", "13", "19", "23", "45", "49", "63", env={"OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


def test_the_subsampled_shortcut_is_the_strided_convolution():
    torch.manual_seed(0)
    conv = StridedConv1x1(8, 16, stride=2)
    x = torch.randn(4, 8, 15, 16)
    expected = torch.nn.functional.conv2d(x, conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    assert conv(x).shape == (4, 16, 8, 8)


@pytest.mark.slow  # two training runs in subprocesses
@pytest.mark.parametrize("override", ["data.val_size=5", "data.train_limit=995"])
def test_the_runs_that_crashed_finish(synthetic_dir, tmp_path, override):
    """The issue's reproductions on the synthetic set's 400 images: ragged last batches of 45 and 43."""
    data = "data.train_limit=393" if "train_limit" in override else override
    args = ["distill/train_student.py", "--recipe", "ce_smoke", "--output-dir", str(tmp_path / "run")]
    proc = python(*args, *tiny(synthetic_dir, data), env={"OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Final test accuracy" in proc.stdout and not (tmp_path / "run" / ".lock").exists()


@pytest.mark.slow  # a training run in a subprocess
def test_a_run_that_died_does_not_block_the_next(synthetic_dir, tmp_path):
    """A crash (SIGSEGV, SIGKILL) leaves the run's .lock behind; its owner is gone, so the next run takes it
    over and says so."""
    import json
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    lock = {"pid": dead.pid, "host": socket.gethostname(), "started": "2026-12-01 10:00:00"}
    (run / ".lock").write_text(json.dumps(lock))
    proc = python("distill/train_student.py", "--recipe", "ce_smoke", "--output-dir", str(run),
                  *tiny(synthetic_dir, "train.epochs=1"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"locked by PID {dead.pid}" in proc.stderr and "taking the lock over" in proc.stderr
    assert not (run / ".lock").exists()
