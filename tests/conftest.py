"""Shared fixtures: tiny synthetic CIFAR-format data (always) and the real data set (when present)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.data import Split, load_cifar10, write_batches

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = Path(os.environ.get("DISTILL_SHARED_CIFAR10", ROOT.parent / "shared" / "data" / "cifar10"))


def synthetic_split(n: int, seed: int) -> Split:
    """Images whose colour and a bright square depend on the label, plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    palette = np.random.default_rng(1234).integers(30, 225, (10, 3))  # shared by train and test
    images = rng.normal(0, 25, (n, 32, 32, 3)) + palette[labels][:, None, None, :]
    for c in range(10):
        r, col = divmod(c, 4)
        images[labels == c, 4 + 6 * r : 10 + 6 * r, 4 + 6 * col : 10 + 6 * col] = 255
    return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A data dir holding cifar-10-batches-py/ with 400 training and 200 test synthetic images."""
    root = tmp_path_factory.mktemp("synthetic")
    write_batches(root, synthetic_split(400, 0), synthetic_split(200, 1))
    return root


@pytest.fixture(scope="session")
def real_data_dir(tmp_path_factory) -> Path:
    """The real CIFAR-10 unpacked from ../shared/data/cifar10; the test is skipped where it is absent."""
    if not (SHARED_CIFAR / "unpack.py").is_file():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR}")
    root = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(SHARED_CIFAR / "unpack.py"), str(root)], check=True, capture_output=True)
    return root


def python(*args: str, env: dict | None = None, preexec=None) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root, as a user runs it: the repo on PYTHONPATH, no
    failpoint inherited from this process, ``env`` on top; output captured as text."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("DISTILL_FAILPOINT")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
    )


LAUNCH = ["-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
LAUNCH += ["--dynamo_backend", "no", "--main_process_port", "0"]  # port 0: a free one, so tests can overlap


def accelerate_launch(
    *args: str, processes: int = 2, quiet: bool = False, cpu: bool = False, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`accelerate launch` on this machine: --multi_gpu for several processes (gloo here), or --cpu."""
    mode = ["--cpu" if cpu or processes == 1 else "--multi_gpu", "--num_processes", str(processes)]
    return python(*LAUNCH, *mode, *(["-q"] if quiet else []), *args, env={"OMP_NUM_THREADS": "1", **(env or {})})


def tiny(data_dir: Path, *extra: str) -> list[str]:
    """Overrides that make any recipe run in a second or two on the synthetic data."""
    return [
        f"data.dir={data_dir}",
        "data.download=false",
        "train.epochs=2",
        "train.batch_size=50",
        "train.eval_batch_size=100",
        "cache.batch_size=100",
        *extra,
    ]


@pytest.fixture()
def test_pkl(synthetic_dir, tmp_path) -> Path:
    """A test pickle of the synthetic test set's first 50 images, ids 0..49, laid out as the contest's."""
    _, test = load_cifar10(synthetic_dir, download=False)
    path = tmp_path / "test.pkl"
    path.write_bytes(pickle.dumps({b"data": test.images[:50], b"ids": np.arange(50)}))
    return path
