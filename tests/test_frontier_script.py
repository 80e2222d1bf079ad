"""The prepared device plans (bench/plans/, run by bench/device.py), rehearsed on a CPU: every step of each plan
and its table or summary."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def rehearse(plan: str, data_dir: Path, tmp_path: Path) -> Path:
    """Run device plan ``plan`` with SMOKE=1 (tiny nets and data) and check that every step ran; return its output
    dir."""
    out = tmp_path / "out"
    env = {**os.environ, "SMOKE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "W": str(tmp_path / "w")}
    proc = subprocess.run([sys.executable, "-m", "bench.device", plan, str(data_dir), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (out / "failed.txt").exists(), (out / "failed.txt").read_text()
    assert not (out / "skipped.txt").exists()
    return out


@pytest.mark.slow
def test_frontier_script_runs_every_step_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("frontier", synthetic_dir, tmp_path)
    assert sorted(p.stem for p in out.glob("*.json")) == ["ce96", "fast94", "fast94c", "fast94lite", "fast96", "half",
                                                          "max"]  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert "not measured" not in summary and "KD bought" in summary
    assert (out / "frontier.png").stat().st_size > 10_000


@pytest.mark.slow
def test_losses_script_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("losses", synthetic_dir, tmp_path)
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
    out = rehearse("ablation", synthetic_dir, tmp_path)
    table = (out / "ablation.md").read_text()
    assert (
        "not run" not in table
        and "| `air_b112` | `kd_fast94` `model.kwargs={}` `kd.alpha=0` `model.kwargs.blocks=[1,1,2]`" in table
    )
    assert all(json.loads(p.read_text())["student_kd"]["alpha"] == 0 for p in out.glob("*.json"))


@pytest.mark.slow
def test_speed_script_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("speed", synthetic_dir, tmp_path)
    table = (out / "speed.md").read_text()
    assert (
        "not run" not in table
        and "| `muon_prog` | `kd_fast94_muon` `model.kwargs={}` `kd.alpha=0` `train.select_fraction=1` `train.epochs=8` "
        "`train.whiten_bias_epochs=0` `train.progressive_min_size=24`"
        in table
    )
    muon = json.loads((out / "muon.json").read_text())
    assert muon["student_recipe"] == "kd_fast94_muon" and muon["student_kd"]["alpha"] > 0


@pytest.mark.slow
def test_main_plan_runs_the_default_recipes_and_their_report_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("main", synthetic_dir, tmp_path)
    assert (out / "main_runs.tgz").stat().st_size > 10_000


def test_a_plan_runs_its_steps_in_order_each_within_its_limit_and_says_what_failed(tmp_path, capsys):
    """The driver on a plan of shell commands: ``each`` repeats a step, ``vars`` and ``{out}`` fill fields, per-epoch
    lines are dropped, a step past its limit or failing is named in failed.txt and the rest go on; past the budget,
    a step is skipped and named."""
    from bench import device

    plan = tmp_path / "p.yaml"
    plan.write_text(
        "measures: a test\nbudget: 30\nvars: {greeting: 'hello {out}'}\nsteps:\n"
        "  - {name: 'say_{each}', each: [a, b], limit: 5, command: \"printf 'epoch 1/2 x\\\\n{greeting} {each}\\\\n'\"}\n"
        "  - {name: fails, limit: 5, command: 'exit 3'}\n"
        "  - {name: slow, limit: 1, command: 'sleep 20'}\n"
        "  - {name: late, limit: 100, command: 'echo never'}\n"
        "finish: ['echo table {work}']\n"
    )
    out = tmp_path / "out"
    assert device.run_plan(str(plan), "DATA", out, work=str(tmp_path / "w")) == 2
    said = capsys.readouterr().out
    assert f"hello {out} a\n" in said and f"hello {out} b\n" in said and "\nepoch 1/2" not in said
    assert (out / "failed.txt").read_text().splitlines() == ["fails: exit 3 (124: over its 5s limit)",
                                                            "slow: exit 124 (124: over its 1s limit)"]  # fmt: skip
    assert (out / "skipped.txt").read_text().startswith("late (at ") and "never" not in said
    assert f"table {tmp_path / 'w'}" in said


@pytest.mark.slow
def test_rounds_plan_runs_every_round_variant_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("rounds", synthetic_dir, tmp_path)
    table = (out / "rounds.md").read_text()
    for row in ("s0/kd_smoke-round3", "s1/kd_smoke-round2", "t4_s1/kd_smoke", "ens_s0/kd_smoke-round2", "plain_s1"):
        assert f"| {row}" in table, row
    assert "| ens_s1/kd_smoke-round2 |" in table and "round 2: " in table
    assert len(list(out.glob("round_*.json"))) == 10  # rounds 1-3 of s0 and s1, rounds 1-2 of ens_s0 and ens_s1


@pytest.mark.slow
def test_rung95_plan_runs_every_step_and_tables_them_on_a_cpu(synthetic_dir, tmp_path):
    out = rehearse("rung95", synthetic_dir, tmp_path)
    table = (out / "rung95.md").read_text()
    assert "not run" not in table and "| `tr_t4` | `kd_fast95`" in table and "T 4, loss x 0.25" in table
    scores = json.loads((out / "scores.json").read_text())["rows"]
    assert len(scores) == 2 * 6 and all("c_bn_train" in r for r in scores.values())


def test_a_stopped_driver_stops_its_running_step_too(tmp_path):
    """SIGTERM to the driver (timeout, the device's limit) ends the step it runs, whose process group is its own."""
    import signal
    import time

    plan = tmp_path / "p.yaml"
    marker = tmp_path / "still-running"
    plan.write_text(f"measures: a test\nsteps:\n  - {{name: long, limit: 60, command: 'sleep 3; touch {marker}'}}\n")
    driver = subprocess.Popen([sys.executable, "-m", "bench.device", str(plan), "DATA", str(tmp_path / "out")],
                              cwd=ROOT, env={**os.environ, "W": str(tmp_path / "w")})  # fmt: skip
    time.sleep(1.5)
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=10) == 128 + signal.SIGTERM
    time.sleep(2.5)
    assert not marker.exists()
