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
