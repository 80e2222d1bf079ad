"""kill -9 at exact points of each stage, then --resume (or a rerun of the cache command).

Each kill is a real SIGKILL (``DISTILL_FAILPOINT``, see :mod:`distill.failpoints`): no cleanup
runs. After the kill, anything a later run trusts must be complete; after the resume, the run
must equal an uninterrupted one: the same metrics (each epoch once), weights and cache bytes.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from distill.logit_cache import LogitCache
from tests.conftest import python, tiny

pytestmark = pytest.mark.slow  # whole runs killed and resumed in subprocesses, ~10-60 s each

TIMING = ("img_per_s", "seconds", "first_step_seconds")


def launch(script: str, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    return python(f"distill/{script}", *args, env={"DISTILL_FAILPOINT": failpoint} if failpoint else None)


def teacher(out: Path, data: Path, *extra: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    return launch(
        "train_teacher.py",
        "--recipe",
        "teacher_smoke",
        "--output-dir",
        str(out),
        *tiny(data, "train.epochs=3"),
        *extra,
        failpoint=failpoint,
    )


def student(out: Path, data: Path, cache: Path, *extra: str, failpoint: str | None = None):
    return launch(
        "train_student.py",
        "--recipe",
        "kd_smoke",
        "--teacher-cache",
        str(cache),
        "--output-dir",
        str(out),
        *tiny(data, "train.epochs=3"),
        *extra,
        failpoint=failpoint,
    )


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in lines]


def assert_killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Final test accuracy:" in proc.stdout or "cache:" in proc.stdout


def assert_trustworthy_state(run: Path) -> None:
    """What a kill leaves: state/ is absent or complete, and state.tmp/state.old are never read as state."""
    state = run / "state"
    assert not state.exists() or (state / "progress.json").is_file()
    assert not (run / "summary.json").exists() or (run / "model.safetensors").is_file()


def assert_same_run(run: Path, reference: Path) -> None:
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3]  # each epoch exactly once
    assert metrics(run) == metrics(reference)
    done, ref = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    assert (done["test_accuracy"], done["test_accuracy_no_tta"]) == (ref["test_accuracy"], ref["test_accuracy_no_tta"])
    assert (run / "model.safetensors").read_bytes() == (reference / "model.safetensors").read_bytes()
    assert not (run / "state.tmp").exists() and not (run / "state.old").exists()


def same_cache(a: Path, b: Path) -> bool:
    files = lambda d: {p.name: p.read_bytes() for p in d.glob("*.npy")}  # noqa: E731
    meta = lambda d: {  # noqa: E731  (who built it, and how long it took, may differ)
        k: v for k, v in json.loads((d / "meta.json").read_text()).items() if k not in ("teachers", "build_seconds")
    }
    return files(a) == files(b) and meta(a) == meta(b)


@pytest.fixture(scope="module")
def reference(synthetic_dir, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted teacher (with its cache) and student runs to compare every resumed run against."""
    root = tmp_path_factory.mktemp("reference")
    assert_ok(teacher(root / "teacher", synthetic_dir))
    assert_ok(student(root / "student", synthetic_dir, root / "teacher" / "cache"))
    return {"teacher": root / "teacher", "cache": root / "teacher" / "cache", "student": root / "student"}


@pytest.mark.parametrize(
    "point",
    [
        "train.step@13",  # mid epoch 2, after the epoch-1 checkpoint
        "checkpoint.swap@2",  # epoch-2 state complete in state.tmp, old state moved aside, none in place
        "cache.view@1",  # training finished; the cache half computed
    ],
)
def test_teacher_killed_then_resumed(point, reference, synthetic_dir, tmp_path):
    run = tmp_path / "teacher"
    assert_killed(teacher(run, synthetic_dir, failpoint=point))
    assert_trustworthy_state(run)
    assert not (run / "cache").exists()
    # The resume command a job script repeats: the run's own recipe, only the data location given.
    assert_ok(launch("train_teacher.py", "--output-dir", str(run), "--resume", f"data.dir={synthetic_dir}"))
    assert_same_run(run, reference["teacher"])
    assert same_cache(run / "cache", reference["cache"])
    assert not list(run.glob(".cache.*"))


@pytest.mark.parametrize(
    "point",
    [
        "epoch.logged@2",  # epoch 2 in metrics.jsonl but not checkpointed: the resume must redo it, once
        "run.weights",  # final weights written, summary.json not yet
    ],
)
def test_student_killed_then_resumed(point, reference, synthetic_dir, tmp_path):
    run = tmp_path / "student"
    assert_killed(student(run, synthetic_dir, reference["cache"], failpoint=point))
    assert_trustworthy_state(run)
    assert_ok(student(run, synthetic_dir, reference["cache"], "--resume"))
    assert_same_run(run, reference["student"])


def test_a_selecting_student_killed_then_resumed(reference, synthetic_dir, tmp_path):
    """A selecting epoch keeps the images its record of losses ranks hardest: a resumed run must have it back."""
    extra = ("train.select_fraction=0.5", "train.select_after=1")
    uninterrupted, run = tmp_path / "uninterrupted", tmp_path / "student"
    assert_ok(student(uninterrupted, synthetic_dir, reference["cache"], *extra))
    assert_killed(student(run, synthetic_dir, reference["cache"], *extra, failpoint="train.step@13"))  # in epoch 2
    assert_ok(student(run, synthetic_dir, reference["cache"], *extra, "--resume"))
    assert_same_run(run, uninterrupted)
    assert [m["images"] for m in metrics(run)] == [400, 200, 200]


@pytest.fixture(scope="module")
def older_cache(reference, synthetic_dir, tmp_path_factory) -> Path:
    """Another valid cache of the same teacher (1 view set), to be replaced by a rebuild."""
    out = tmp_path_factory.mktemp("older") / "cache"
    command = ["--teacher", str(reference["teacher"]), "--out", str(out), f"data.dir={synthetic_dir}"]
    assert_ok(launch("cache_logits.py", *command, "cache.views=1"))
    return out


@pytest.mark.parametrize(
    "point",
    [
        "cache.files",  # arrays written to the temporary directory, no meta.json
        "cache.swap",  # the previous cache moved aside, the new one not yet in place
    ],
)
def test_cache_build_killed_then_rerun(point, reference, older_cache, synthetic_dir, tmp_path):
    out = tmp_path / "cache"
    shutil.copytree(older_cache, out)  # a previous cache at --out, being rebuilt
    command = ["--teacher", str(reference["teacher"]), "--out", str(out), f"data.dir={synthetic_dir}"]
    assert_killed(launch("cache_logits.py", *command, failpoint=point))
    if out.exists():  # a reader sees the old cache or none, never half of the new one
        assert LogitCache.load(out).num_views == 1
    assert_ok(launch("cache_logits.py", *command))
    assert same_cache(out, reference["cache"])
    assert LogitCache.load(out).num_views == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # the killed build's leftovers are gone


def test_ctrl_c_before_the_first_checkpoint_says_to_run_again(synthetic_dir, tmp_path):
    """SIGINT mid epoch 1: nothing to resume, so the message says to run the command again, which works."""
    import os
    import sys
    import time

    from tests.conftest import ROOT

    run = tmp_path / "teacher"
    args = ["distill/train_teacher.py", "--recipe", "teacher_smoke", "--output-dir", str(run), *tiny(synthetic_dir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DISTILL_FAILPOINT": "train.step@2:stall=60"}
    # A shell runs a background job with SIGINT ignored, and an ignored signal stays ignored across exec:
    # give the child Python's default Ctrl-C, however pytest itself was started.
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.time() + 120
    while not (run / "run.json").exists() and time.time() < deadline:  # set up; epoch 1 stalls at its 2nd step
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = proc.stderr.read()
    assert "nothing to resume; run the same command again" in err and "Traceback" not in err, err
    assert not (run / ".lock").exists() and not (run / "state").exists()
    assert_ok(teacher(run, synthetic_dir))  # and running it again works


@pytest.fixture(scope="module")
def transfer(reference, synthetic_dir, tmp_path_factory) -> dict[str, Path]:
    """A transfer set (60 unlabelled images), the teacher's cache with it, and an uninterrupted student on it."""
    import numpy as np

    from tests.conftest import synthetic_split

    root = tmp_path_factory.mktemp("transfer")
    np.save(root / "unlabeled.npy", synthetic_split(60, 9).images)
    cache = root / "cache"
    command = ["--teacher", str(reference["teacher"]), "--out", str(cache), f"data.dir={synthetic_dir}"]
    assert_ok(
        launch("cache_logits.py", *command, "--unlabeled", str(root / "unlabeled.npy"), "augment.mixup_alpha=0.5")
    )
    extra = ("--unlabeled", str(root / "unlabeled.npy"), "augment.mixup_alpha=0.5")  # partners from either pool
    assert_ok(student(root / "student", synthetic_dir, cache, *extra))
    return {"cache": cache, "student": root / "student", "extra": extra}


def test_a_student_on_a_transfer_set_killed_then_resumed(transfer, synthetic_dir, tmp_path):
    """The combined set's epochs, schedule and views resume byte for byte, like the labelled set's."""
    run = tmp_path / "student"
    assert_killed(student(run, synthetic_dir, transfer["cache"], *transfer["extra"], failpoint="train.step@13"))
    assert_trustworthy_state(run)
    assert_ok(student(run, synthetic_dir, transfer["cache"], *transfer["extra"], "--resume"))
    assert_same_run(run, transfer["student"])
