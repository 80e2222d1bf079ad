"""The prepared device scripts, rehearsed on a CPU: every step of bench/run_frontier_h100.sh and its summary, and
of bench/run_losses_h100.sh, bench/run_ablation_h100.sh and bench/run_speed_h100.sh and their tables."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def rehearse(script: str, data_dir: Path, tmp_path: Path) -> Path:
    """Run ``script`` with SMOKE=1 (tiny nets and data) and check that every step ran; return its output dir."""
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "W": str(tmp_path / "w")}
    proc = subprocess.run(
        ["bash", script, str(data_dir), str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (out / "failed.txt").exists(), (out / "failed.txt").read_text()
    assert not (out / "skipped.txt").exists()
    return out


@pytest.mark.slow
def test_frontier_script_runs_every_step_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("bench/run_frontier_h100.sh", synthetic_dir, tmp_path)
    assert sorted(p.stem for p in out.glob("*.json")) == ["ce96", "fast94", "fast94c", "fast94lite", "fast96", "half",
                                                          "max"]  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "not measured" not in summary and "KD bought" in summary
    assert (out / "frontier.png").stat().st_size > 10_000


@pytest.mark.slow
def test_losses_script_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("bench/run_losses_h100.sh", synthetic_dir, tmp_path)
    table = (out / "losses.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `t_dist` |"))
    assert (
        "not run" not in table and "kd.loss=dist" in row and "| 1 (" in row and "transfer set cifar10_test.npy" in row
    )
    scores = json.loads((out / "scores.json").read_text())["rows"]
    assert len(scores) == 2 * 15 and all(set(r) >= {"a_bn_train", "b_bn_train"} for r in scores.values())
    dkd = json.loads((out / "t_dkd.json").read_text())
    assert dkd["student_kd"]["loss"] == "dkd" and dkd["student_kd"]["unlabeled"]
    assert len(json.loads((out / "ens3.json").read_text())["teachers"]) == 3


@pytest.mark.slow
def test_ablation_script_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("bench/run_ablation_h100.sh", synthetic_dir, tmp_path)
    table = (out / "ablation.md").read_text()
    assert "not run" not in table and "| `air_b112` | `kd_fast94` `kd.alpha=0` `model.kwargs.blocks=[1,1,2]`" in table
    assert all(json.loads(p.read_text())["student_kd"]["alpha"] == 0 for p in out.glob("*.json"))


@pytest.mark.slow
def test_speed_script_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("bench/run_speed_h100.sh", synthetic_dir, tmp_path)
    table = (out / "speed.md").read_text()
    assert (
        "not run" not in table
        and "| `muon_prog` | `kd_fast94_muon` `kd.alpha=0` `train.progressive_min_size=24`" in table
    )
    muon = json.loads((out / "muon.json").read_text())
    assert muon["student_recipe"] == "kd_fast94_muon" and muon["student_kd"]["alpha"] > 0
