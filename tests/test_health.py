"""A run that did not learn says so (distill.health): a warning line, and ``learned: false`` in its summary."""

import json

from conftest import tiny

from distill import health, train_teacher


def test_verdict_names_divergence_and_chance_and_passes_learning():
    assert "diverging" in health.verdict(1234.0, 0.09, None, 10, final=False)
    assert "diverging" in health.verdict(float("nan"), None, None, 10, final=True)
    assert health.verdict(2.2, 0.11, None, 10, final=False) is None  # at chance after one epoch: too early to say
    said = health.verdict(2.3, 0.102, 0.06, 10, final=True)
    assert "did not learn" in said and "training accuracy 10.2%" in said and "held-out accuracy 6.0%" in said
    assert health.verdict(1.1, 0.62, 0.55, 10, final=True) is None
    assert health.verdict(2.0, 0.40, 0.12, 10, final=True) is None  # it learnt, and generalises badly: not this check
    assert health.verdict(None, None, 0.1, 10, final=True) is not None  # what was measured decides


def test_a_run_that_stays_at_chance_warns_and_says_so_in_its_summary(synthetic_dir, tmp_path, capsys):
    """train.lr so small that nothing moves (as a batch size of one step per epoch leaves a run in its warm-up)."""
    run = tmp_path / "run"
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(run), *tiny(synthetic_dir),
                        "train.lr=1e-9", "train.lr_min=0"])  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["learned"] is False and "did not learn" in summary["health"]
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: this run did not learn")]
    assert len(warnings) == 1


def test_a_run_that_learns_says_nothing(synthetic_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(run), *tiny(synthetic_dir)])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["learned"] is True and summary["health"] is None, summary["test_accuracy"]
    assert "did not learn" not in capsys.readouterr().err
