"""What a user sees on the command line: one clear line and exit code 2 for their mistakes."""

import contextlib
import json
import pickle
import subprocess

import numpy as np
import pytest

from tests.conftest import ROOT, accelerate_launch, python, tiny


def assert_one_line_error(proc: subprocess.CompletedProcess, text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and text in errors[0], proc.stderr


def test_dry_run_prints_recipe_and_params(tmp_path):
    proc = python("distill/train_student.py", "--recipe", "kd_t4", "--dry-run", "--data-dir", str(tmp_path / "nodata"))
    assert proc.returncode == 0, proc.stderr
    assert "Trainable parameters: 4676202" in proc.stdout
    assert "GFLOP per image: forward 0.881, training step 2.638" in proc.stdout
    assert "temperature: 4.0" in proc.stdout
    assert not (tmp_path / "nodata").exists() and not (ROOT / "runs" / "kd_t4").exists()


def test_dry_run_over_cap(capsys):
    from distill import train_student
    from distill.errors import cli_main

    with pytest.raises(SystemExit) as exit_info:
        cli_main(lambda: train_student.main(["--dry-run", "model.kwargs.widths=[64,128,256,256]"]))
    assert exit_info.value.code == 2
    assert "5,205,066 trainable parameters, over the 5,000,000 cap" in capsys.readouterr().err


@pytest.mark.parametrize("fails", [False, True])
def test_a_clean_run_leaves_its_process_group(tmp_path, fails):
    """After success the entry point destroys the process group itself (gloo's teardown can abort a finished process
    and hang its peers); after an error it leaves it, since another process may still be inside a collective."""
    import torch.distributed as dist

    from distill.errors import UserError, cli_main

    def main():
        if fails:
            raise UserError("a bad input")

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(SystemExit) if fails else contextlib.nullcontext():
            cli_main(main)
        assert dist.is_initialized() == fails
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_unknown_recipe_from_the_command_line():
    """The entry point's own `__main__` path: one line, exit 2 (tests/test_bad_inputs.py covers the cases)."""
    assert_one_line_error(python("distill/train_student.py", "--recipe", "nope"), "recipe 'nope' not found")


def test_missing_data_offline(tmp_path):
    out = tmp_path / "run"
    proc = python(
        "distill/train_teacher.py",
        "--recipe",
        "teacher_smoke",
        "--data-dir",
        str(tmp_path / "empty"),
        "--output-dir",
        str(out),
        "data.download=false",
    )
    assert_one_line_error(proc, "put the official python batches there")
    assert not (out / "state").exists() and not (out / "model.safetensors").exists()


def test_export_errors(tmp_path, synthetic_dir):
    bad = tmp_path / "test.pkl"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((4, 32, 32, 3), np.float64)}))
    proc = python(
        "distill/export.py", "--run", str(tmp_path / "norun"), "--test-pkl", str(bad), "--out", str(tmp_path / "s.csv")
    )
    assert_one_line_error(proc, "'data' must be uint8")
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_accelerate_launch_end_to_end(synthetic_dir, tmp_path):
    """The README's commands, under `accelerate launch`, on CPU: teacher -> cache -> student -> CSV."""
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    proc = accelerate_launch(
        "distill/train_teacher.py",
        "--recipe",
        "teacher_smoke",
        "--output-dir",
        str(teacher),
        *tiny(synthetic_dir),
        processes=1,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Final test accuracy:" in proc.stdout and "Trainable parameters: 78042" in proc.stdout
    proc = accelerate_launch(
        "distill/train_student.py",
        "--recipe",
        "kd_smoke",
        "--teacher-cache",
        str(teacher / "cache"),
        "--output-dir",
        str(student),
        *tiny(synthetic_dir),
        processes=1,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Trainable parameters: 19954" in proc.stdout
    pkl = tmp_path / "test.pkl"
    pkl.write_bytes(pickle.dumps({b"data": np.zeros((7, 3072), np.uint8)}))
    proc = python(
        "distill/export.py", "--run", str(student), "--test-pkl", str(pkl), "--out", str(tmp_path / "sub.csv")
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "sub.csv").read_text().splitlines()[0] == "ID,Labels"
    assert "7 rows, ids 0..6" in proc.stdout


@pytest.mark.slow
def test_two_runs_started_at_once_into_one_dir(synthetic_dir, tmp_path):
    """One finishes; the other is refused (the run dir's lock, or the run it finds there); each epoch is logged once."""
    import os
    import sys

    run = tmp_path / "run"
    args = ["distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(run), *tiny(synthetic_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "is in use by PID" in outcomes[1][1] or "already holds a run" in outcomes[1][1]
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert not (run / ".lock").exists()
