"""distill.files: writes that a kill at any instant cannot leave half-done."""

from __future__ import annotations

import os
import subprocess

import pytest


def test_every_staged_directory_clears_what_killed_runs_left(tmp_path):
    """One helper stages the cache, the report, the paper and distill-inspect's output: it removes a dead
    process's .NAME.tmp-PID / .NAME.old-PID, keeps a live one's, and an error leaves the old directory whole."""
    from distill.files import staged_directory

    final = tmp_path / "report"
    final.mkdir()
    (final / "report.md").write_text("old")
    dead = _dead_pid()
    for name in (f".report.tmp-{dead}", f".report.old-{dead}", f".report.tmp-{os.getppid()}"):
        (tmp_path / name).mkdir()
    with pytest.raises(RuntimeError):
        with staged_directory(final, "report.swap") as staged:
            (staged / "report.md").write_text("half")
            raise RuntimeError("killed mid-way")
    assert (final / "report.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".report.tmp-{os.getppid()}", "report"]  # a live one stays
    with staged_directory(final, "report.swap") as staged:
        (staged / "report.md").write_text("new")
    assert (final / "report.md").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [
        f".report.tmp-{os.getppid()}", "report"]  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_numbers_that_are_not_numbers_are_never_written(tmp_path):
    """summary.json, metrics.jsonl, the cache's meta.json and every other JSON go through to_json: a NaN or an
    infinity stops the write, naming where it sits, and leaves no file."""
    import math

    from distill.files import write_json
    from distill.runs import append_metrics

    with pytest.raises(ValueError, match=r"refusing to write .*summary.json: runs.1.test_accuracy is NaN or infinite"):
        write_json(tmp_path / "summary.json", {"runs": [{"test_accuracy": 0.5}, {"test_accuracy": math.nan}]})
    assert not (tmp_path / "summary.json").exists()
    with pytest.raises(ValueError, match="train_loss is NaN or infinite"):
        append_metrics(tmp_path, {"epoch": 1, "train_loss": math.inf})
    assert not (tmp_path / "metrics.jsonl").exists()
    write_json(tmp_path / "ok.json", {"a": 1.5, "b": [None, 2]})
    assert (tmp_path / "ok.json").read_text().startswith("{")
