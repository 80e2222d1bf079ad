"""distill.files: writes that a kill at any instant cannot leave half-done."""

from __future__ import annotations

import json
import os
import subprocess
import time

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


def _take_and_hold(run_dir, start, results) -> None:
    """A child process: at ``start``, try the run dir's lock; hold it a moment; report what happened."""
    from distill.errors import UserError
    from distill.files import RunLock

    lock = RunLock(run_dir)
    start.wait()
    try:
        lock.acquire()
    except UserError as err:
        results.put(str(err))
        return
    results.put("took it")
    time.sleep(1.0)  # still held while the others look
    lock.release()


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_of_runs_started_at_once_one_takes_the_lock_and_the_others_name_it(tmp_path, stale):
    """A free directory, or one whose lock a killed run left: one of six takes it, and each of the other five
    reads who holds it (never an empty lock: the holder is linked into place whole)."""
    import multiprocessing as mp
    import socket

    if stale:  # and the holder file of a run killed while it took the lock
        (tmp_path / ".lock").write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "x"}))
        (tmp_path / f".lock.tmp-{_dead_pid()}").write_text("{}")
    ctx = mp.get_context("fork")
    start, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_take_and_hold, args=(tmp_path, start, results)) for _ in range(6)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert outcomes[-1] == "took it" and all("is in use by PID" in o for o in outcomes[:-1]), outcomes
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # released, and no .lock.tmp-PID left
