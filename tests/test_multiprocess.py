"""Two CPU processes (gloo) under torchrun: training, caching and evaluation keep their promises."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, tiny


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_teacher_cache_student(synthetic_dir, tmp_path):
    from distill import cache_logits

    teacher = tmp_path / "teacher"
    proc = torchrun(
        "distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(teacher), *tiny(synthetic_dir)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2" in proc.stdout  # one run over two processes
    assert proc.stdout.count("Final test accuracy:") == 1  # only the main process prints
    metrics = [json.loads(ln) for ln in (teacher / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]  # only the main process writes
    # the cache built by 2 processes equals, byte for byte, one built by 1 process from the same weights
    single = cache_logits.main(["--teacher", str(teacher), "--out", str(tmp_path / "single"), *tiny(synthetic_dir)[:2]])
    for name in ("logits.npy", "dy.npy", "dx.npy", "flip.npy", "cy.npy", "cx.npy"):
        assert (single / name).read_bytes() == (teacher / "cache" / name).read_bytes(), name
    student = tmp_path / "student"
    proc = torchrun(
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
