"""Two CPU processes (gloo) under `accelerate launch`: training, caching and evaluation keep their promises.

On a machine without CUDA, `accelerate launch --multi_gpu --num_processes 2` starts two processes
through torchrun and the entry points pick the gloo backend. (`accelerate launch --cpu
--num_processes 2` starts only one process unless given `--mpirun_hostfile`; see README.)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import LAUNCH, ROOT, accelerate_launch, tiny

pytestmark = pytest.mark.slow  # several processes over gloo, each test ~20-60 s on 2 cores


def test_two_processes_teacher_cache_student(synthetic_dir, tmp_path):
    from distill import cache_logits

    teacher = tmp_path / "teacher"
    late = {"DISTILL_FAILPOINT": "checkpoint.save@2:stall=2", "DISTILL_FAILPOINT_RANK": "1"}  # rank 1 writes late
    proc = accelerate_launch(
        "distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(teacher), *tiny(synthetic_dir),
        env=late,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the last checkpoint holds both processes' parts, although rank 1 wrote its part 2 s after rank 0
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in (teacher / "state").iterdir()}
    assert not (teacher / "state.tmp").exists()
    assert "x2" in proc.stdout  # one run over two processes
    assert proc.stdout.count("Final test accuracy:") == 1  # only the main process prints
    metrics = [json.loads(ln) for ln in (teacher / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # only the main process writes
    # the cache built by 2 processes equals, byte for byte, one built by 1 process from the same weights
    single = cache_logits.main(["--teacher", str(teacher), "--out", str(tmp_path / "single"), *tiny(synthetic_dir)[:2]])
    names = sorted(p.name for p in single.glob("*.npy"))
    assert names == sorted(p.name for p in (teacher / "cache").glob("*.npy")) and "logits.npy" in names
    for name in names:
        assert (single / name).read_bytes() == (teacher / "cache" / name).read_bytes(), name
    student = tmp_path / "student"
    proc = accelerate_launch(
        "distill/train_student.py",
        "--recipe",
        "kd_smoke",
        "--teacher-cache",
        str(teacher / "cache"),
        "--output-dir",
        str(student),
        *tiny(synthetic_dir, "data.test_limit=199"),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((student / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["test_images"] == 199
    # an odd test set split over 2 processes: each image counted once, so accuracy is k/199
    assert abs(summary["test_accuracy"] * 199 - round(summary["test_accuracy"] * 199)) < 1e-6
    # the classes the two processes predicted, gathered in the images' order: their accuracy is the summary's
    import numpy as np

    from distill.data import load_cifar10

    classes = np.load(student / "test_predictions.npy")
    labels = load_cifar10(synthetic_dir, download=False)[1].labels[:199]
    assert classes.shape == (199,) and float(np.mean(classes == labels)) == summary["test_accuracy"]


def test_sigterm_stops_both_processes_after_the_same_epoch(synthetic_dir, tmp_path):
    """A scheduler's SIGTERM to the launcher reaches both processes: they agree on the epoch, checkpoint, stop."""
    run = tmp_path / "teacher"
    args = ["distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(run)]
    args += tiny(synthetic_dir, "train.epochs=12", "train.checkpoint_every=100")  # no checkpoint but the last
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    mode = ["--multi_gpu", "--num_processes", "2"]
    launcher = subprocess.Popen(
        [sys.executable, *LAUNCH, *mode, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    metrics = run / "metrics.jsonl"
    while launcher.poll() is None and not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.01)
    launcher.send_signal(signal.SIGTERM)
    stderr = launcher.communicate(timeout=120)[1]
    assert launcher.returncode != 0
    assert stderr.count("stopped: SIGTERM received; checkpoint saved after epoch") == 1, stderr[-3000:]
    done = json.loads((run / "state" / "progress.json").read_text())["epoch"]
    assert 1 <= done < 12
    assert [json.loads(ln)["epoch"] for ln in metrics.read_text().splitlines()] == list(range(1, done + 1))
    single = tmp_path / "single"
    shutil.copytree(run, single)  # the same checkpoint, resumed on one process (a requeue onto a smaller node)
    for resumed, processes in ((run, 2), (single, 1)):
        proc = accelerate_launch(
            "distill/train_teacher.py", "--output-dir", str(resumed), "--resume", f"data.dir={synthetic_dir}",
            processes=processes,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "resuming" in proc.stdout and f"after epoch {done}" in proc.stdout  # (rich wraps the long path)
        lines = [json.loads(ln) for ln in (resumed / "metrics.jsonl").read_text().splitlines()]
        assert [m["epoch"] for m in lines] == list(range(1, 13))
        assert json.loads((resumed / "summary.json").read_text())["num_processes"] == processes


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "error: " in ln and "ChildFailedError" not in ln]


def test_what_a_user_sees_under_accelerate_launch(tmp_path):
    """A bad input under `accelerate launch -q`: the one line, no traceback; exit 1 (Accelerate's code).

    Launched as `--cpu --num_processes 2`, which Accelerate runs as one process: a warning says so.
    """
    bad = ["distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(tmp_path / "run")]
    bad += [f"data.dir={tmp_path / 'nodata'}", "data.download=false"]
    proc = accelerate_launch(*bad, processes=2, cpu=True, quiet=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "put the official python batches there" in lines[0]
    warning = "warning: accelerate launch --cpu --num_processes 2 started 1 process"
    assert proc.stderr.count(warning) == 1 and "accelerate launch --multi_gpu --num_processes 2" in proc.stderr
    # two processes: both stop with exit 2, only the main one prints the line (then torchrun's report)
    proc = accelerate_launch(*bad, processes=2)
    assert proc.returncode == 1
    assert len(error_lines(proc.stderr)) == 1 and error_lines(proc.stderr)[0].startswith("error: ")
    assert "exitcode  : 2" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_two_processes_hold_the_whitening_bias_after_its_epochs(synthetic_dir, tmp_path):
    """DDP expects a gradient for every parameter it was built with: a bias held after train.whiten_bias_epochs must
    not stall or fail the reduction (the Accelerator then looks for unused parameters)."""
    from safetensors.torch import load_file

    run = tmp_path / "teacher"
    overrides = tiny(synthetic_dir, "train.epochs=3", "model.name=cifar_air_tiny", "train.whiten_bias_epochs=1")
    proc = accelerate_launch("distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(run),
                             *overrides, "cache.views=0")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    weights = load_file(str(run / "model.safetensors"))
    assert all(bool(t.isfinite().all()) for t in weights.values())
