"""The prepared device script, rehearsed: every step of bench/run_frontier_h100.sh and its summary, on a CPU."""

import os
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_frontier_script_runs_every_step_on_a_cpu(synthetic_dir, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "W": str(tmp_path / "w")}
    proc = subprocess.run(
        ["bash", "bench/run_frontier_h100.sh", str(synthetic_dir), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (out / "failed.txt").exists(), (out / "failed.txt").read_text()
    assert not (out / "skipped.txt").exists()
    assert sorted(p.stem for p in out.glob("*.json")) == ["ce96", "fast94", "fast94c", "fast96", "half", "max"]
    summary = (out / "summary.md").read_text()
    assert "not measured" not in summary and "KD bought" in summary
    assert (out / "frontier.png").stat().st_size > 10_000
