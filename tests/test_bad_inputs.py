"""Every row of the "When something is wrong" table (docs/troubleshooting.md), run as a user would and checked.

For each case: exit code 2, exactly one ``error:`` line containing the table's text, no traceback,
and nothing half-written (a new run dir or output file does not appear; an existing one is unchanged).
The expected text is read from docs/troubleshooting.md, so the table and the code cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from distill import cache_logits, evaluate, export, train_student, train_teacher
from distill.data import BATCH_DIR, write_batches
from distill.errors import cli_main
from tests.conftest import ROOT, python, synthetic_split, tiny


def readme_cases() -> dict[str, str]:
    """``{case: expected text}`` from the table in docs/troubleshooting.md."""
    text = (ROOT / "docs" / "troubleshooting.md").read_text()
    section = text.split("## When something is wrong", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| .* \| `(.+)` \|$", section, flags=re.M)
    return dict(rows)


CASES: dict[str, Callable] = {}


def case(fn: Callable) -> Callable:
    CASES[fn.__name__.removeprefix("case_").replace("_", "-")] = fn
    return fn


@dataclass
class Call:
    """One command line: ``main(argv)`` in this process, or ``argv`` as a subprocess (``script`` set)."""

    main: Callable | None
    argv: list[str]
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards
    unchanged: list[Path] = field(default_factory=list)  # byte for byte as before
    script: str | None = None  # run as `python distill/<script>` in a subprocess
    preexec: Callable | None = None
    check: Callable | None = None  # further checks after the error
    code: int = 2  # the exit code: 2 for a mistake; 128 + signal for a run that was stopped
    prefix: str = "error: "  # how the one line starts


@dataclass
class Ctx:
    tmp: Path
    data: Path
    teacher: Path
    student: Path
    monkeypatch: pytest.MonkeyPatch

    def data_copy(self) -> Path:
        root = self.tmp / "data"
        shutil.copytree(self.data, root)
        return root

    def unfinished_student(self) -> Path:
        """A copy of the student run as if stopped after its last checkpoint, before the end."""
        run = self.tmp / "stopped"
        shutil.copytree(self.student, run)
        (run / "summary.json").unlink()
        (run / "model.safetensors").unlink()
        return run


@pytest.fixture(scope="module")
def runs(synthetic_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(root / "teacher"), *tiny(synthetic_dir)])
    student_args = ["--recipe", "kd_smoke", "--teacher-cache", str(root / "teacher" / "cache")]
    train_student.main([*student_args, "--output-dir", str(root / "student"), *tiny(synthetic_dir)])
    return root / "teacher", root / "student"


def teacher_args(ctx: Ctx, data: Path, *extra: str) -> list[str]:
    return ["--recipe", "teacher_smoke", "--output-dir", str(ctx.tmp / "run"), *tiny(data), *extra]


def student_args(ctx: Ctx, cache: Path, *extra: str, out: Path | None = None) -> list[str]:
    out = out or ctx.tmp / "run"
    return ["--recipe", "kd_smoke", "--teacher-cache", str(cache), "--output-dir", str(out), *tiny(ctx.data), *extra]


def export_call(ctx: Ctx, obj: object, run: Path | None = None, out: Path | None = None) -> Call:
    pkl = ctx.tmp / "test.pkl"
    pkl.write_bytes(pickle.dumps(obj))
    out = out or ctx.tmp / "submission.csv"
    return Call(export.main, ["--run", str(run or ctx.student), "--test-pkl", str(pkl), "--out", str(out)], [out])


# -- data -------------------------------------------------------------------------------------------


@case
def case_data_missing_offline(ctx: Ctx) -> Call:
    argv = teacher_args(ctx, ctx.tmp / "nodata")
    return Call(train_teacher.main, argv, [ctx.tmp / "run", ctx.tmp / "nodata" / BATCH_DIR])


@case
def case_batch_truncated(ctx: Ctx) -> Call:
    data = ctx.data_copy()
    f = data / BATCH_DIR / "data_batch_3"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return Call(train_teacher.main, teacher_args(ctx, data), [ctx.tmp / "run"])


@case
def case_batch_empty(ctx: Ctx) -> Call:
    data = ctx.data_copy()
    (data / BATCH_DIR / "data_batch_2").write_bytes(b"")
    return Call(train_teacher.main, teacher_args(ctx, data), [ctx.tmp / "run"])


@case
def case_batch_foreign(ctx: Ctx) -> Call:
    data = ctx.data_copy()
    (data / BATCH_DIR / "test_batch").write_bytes(pickle.dumps(["a", "list", "of", "words"]))
    return Call(train_teacher.main, teacher_args(ctx, data), [ctx.tmp / "run"])


@case
def case_labels_out_of_range(ctx: Ctx) -> Call:
    train = synthetic_split(400, 0)
    train.labels[7] = 10
    write_batches(ctx.tmp / "data", train, synthetic_split(200, 1))
    return Call(train_teacher.main, teacher_args(ctx, ctx.tmp / "data"), [ctx.tmp / "run"])


# -- the test pickle (export) ----------------------------------------------------------------------


@case
def case_test_pickle_wrong_shape(ctx: Ctx) -> Call:
    return export_call(ctx, {b"data": np.zeros((4, 32, 32), np.uint8)})


@case
def case_test_pickle_float(ctx: Ctx) -> Call:
    return export_call(ctx, {b"data": np.zeros((4, 32, 32, 3), np.float32)})


@case
def case_test_pickle_no_data(ctx: Ctx) -> Call:
    return export_call(ctx, {b"images": np.zeros((4, 32, 32, 3), np.uint8)})


@case
def case_test_pickle_duplicate_ids(ctx: Ctx) -> Call:
    return export_call(ctx, {b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": np.array([0, 1, 1])})


@case
def case_test_pickle_empty(ctx: Ctx) -> Call:
    return export_call(ctx, {b"data": np.zeros((0, 32, 32, 3), np.uint8)})


@case
def case_test_pickle_ids_overflow(ctx: Ctx) -> Call:
    ids = np.array([0, 1, 2**63 + 5], dtype=np.uint64)  # would be written as a negative int64
    return export_call(ctx, {b"data": np.zeros((3, 32, 32, 3), np.uint8), b"ids": ids})


@case
def case_export_out_is_directory(ctx: Ctx) -> Call:
    folder = ctx.tmp / "subs"
    folder.mkdir()
    call = export_call(ctx, {b"data": np.zeros((2, 32, 32, 3), np.uint8)}, out=folder)
    call.absent, call.unchanged = [], [folder]
    return call


class RunsCode:
    """Unpickling this calls os.system: what a malicious file would do."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return os.system, (f"touch {self.sentinel}",)


@case
def case_test_pickle_runs_code(ctx: Ctx) -> Call:
    sentinel = ctx.tmp / "pwned"
    call = export_call(ctx, {b"data": RunsCode(sentinel)})
    call.absent.append(sentinel)
    return call


@case
def case_export_out_unwritable(ctx: Ctx) -> Call:
    """A CSV into a folder that cannot be written is refused before predicting (as root too: /proc takes no files)."""
    import distill.export as export_module

    def never(*args, **kwargs):
        raise AssertionError("predicted before the --out folder was checked")

    ctx.monkeypatch.setattr(export_module, "predict", never)
    return export_call(ctx, {b"data": np.zeros((2, 3072), np.uint8)}, out=Path("/proc/submission.csv"))


@case
def case_paper_inspect_other_model(ctx: Ctx) -> Call:
    """An inspection made with another run's model would be printed as this student's BatchNorm shift."""
    from distill import paper
    from distill.inspection import inspect_set

    pkl = ctx.tmp / "scored.pkl"
    pkl.write_bytes(pickle.dumps({b"data": np.zeros((20, 32, 32, 3), np.uint8)}))
    inspect_set(pkl, ctx.tmp / "insp", run=ctx.teacher, data_dir=str(ctx.data))
    argv = [str(ctx.student), "--out", str(ctx.tmp / "paper"), "--inspect", str(ctx.tmp / "insp"),
            "--data-dir", str(ctx.data), "--repo", "https://github.com/your-team/distill"]  # fmt: skip
    return Call(paper.main, argv, [ctx.tmp / "paper"])


@case
def case_paper_teacher_taught_none(ctx: Ctx) -> Call:
    """A teacher run whose logits the student never distilled from would be named in the paper as its teacher."""
    from safetensors.torch import load_file, save_file

    from distill import paper

    other = ctx.tmp / "other_teacher"
    shutil.copytree(ctx.teacher, other)
    weights = load_file(str(other / "model.safetensors"))
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, str(other / "model.safetensors"))
    argv = [str(ctx.student), str(other), "--out", str(ctx.tmp / "paper"), "--data-dir", str(ctx.data),
            "--repo", "https://github.com/your-team/distill"]  # fmt: skip
    return Call(paper.main, argv, [ctx.tmp / "paper"])


@case
def case_test_pickle_is_a_training_batch(ctx: Ctx) -> Call:
    """CIFAR-10's data_batch_1 given as the test pickle wrote a CSV of predictions on training images, without a word."""
    call = export_call(ctx, {})
    call.argv[3] = str(ctx.data / BATCH_DIR / "data_batch_1")
    return call


@case
def case_test_pickle_is_a_torch_file(ctx: Ctx) -> Call:
    """A torch.save file (likewise an .npz or a gzip-compressed pickle) is named for what it is, in one line."""
    call = export_call(ctx, {})
    torch.save({"data": torch.zeros(2, 3072, dtype=torch.uint8)}, call.argv[3])
    return call


@case
def case_test_pickle_is_a_folder(ctx: Ctx) -> Call:
    call = export_call(ctx, {})
    Path(call.argv[3]).unlink()
    Path(call.argv[3]).mkdir()
    return call


# -- natural-shift sets (evaluate.py --suite shift) -------------------------------------------------


def shift_call(ctx: Ctx, path: Path) -> Call:
    out = ctx.tmp / "shift"
    argv = ["--run", str(ctx.student), "--suite", "shift", "--natural", str(path), "--images", "20", "--out", str(out)]
    return Call(evaluate.main, [*argv, "--data-dir", str(ctx.data)], [out])


@case
def case_shift_set_unknown_format(ctx: Ctx) -> Call:
    path = ctx.tmp / "cifar101.txt"
    path.write_text("not arrays")
    return shift_call(ctx, path)


@case
def case_shift_set_no_labels(ctx: Ctx) -> Call:
    np.save(ctx.tmp / "cifar10.1_v6_data.npy", np.zeros((4, 32, 32, 3), np.uint8))
    return shift_call(ctx, ctx.tmp / "cifar10.1_v6_data.npy")


@case
def case_shift_set_wrong_shape(ctx: Ctx) -> Call:
    np.savez(ctx.tmp / "cifar102_test.npz", images=np.zeros((4, 32, 32), np.uint8), labels=np.zeros(4, np.int64))
    return shift_call(ctx, ctx.tmp / "cifar102_test.npz")


@case
def case_shift_set_labels_out_of_range(ctx: Ctx) -> Call:
    np.save(ctx.tmp / "v4_data.npy", np.zeros((3, 32, 32, 3), np.uint8))
    np.save(ctx.tmp / "v4_labels.npy", np.array([0, 3, 12]))
    return shift_call(ctx, ctx.tmp / "v4_data.npy")


@case
def case_shift_set_pickled(ctx: Ctx) -> Call:
    np.save(ctx.tmp / "odd_data.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(ctx.tmp / "odd_labels.npy", np.array([0]))
    return shift_call(ctx, ctx.tmp / "odd_data.npy")


# -- the logit cache -------------------------------------------------------------------------------


def cache_copy(ctx: Ctx) -> Path:
    cache = ctx.tmp / "cache"
    shutil.copytree(ctx.teacher / "cache", cache)
    return cache


@case
def case_cache_missing(ctx: Ctx) -> Call:
    (ctx.tmp / "empty").mkdir()
    return Call(train_student.main, student_args(ctx, ctx.tmp / "empty"), [ctx.tmp / "run"])


@case
def case_cache_other_teacher(ctx: Ctx) -> Call:
    teacher = ctx.tmp / "teacher"
    shutil.copytree(ctx.teacher, teacher)
    shutil.rmtree(teacher / "cache")
    cache_logits.main(["--teacher", str(teacher)])  # a cache that records this copy's weights
    weights = load_file(str(teacher / "model.safetensors"))  # then the teacher changes
    save_file(
        {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, str(teacher / "model.safetensors")
    )
    return Call(train_student.main, student_args(ctx, teacher / "cache"), [ctx.tmp / "run"])


@case
def case_cache_other_subset(ctx: Ctx) -> Call:
    argv = student_args(ctx, ctx.teacher / "cache", "data.train_limit=300")
    return Call(train_student.main, argv, [ctx.tmp / "run"])


@case
def case_cache_other_augment(ctx: Ctx) -> Call:
    argv = student_args(ctx, ctx.teacher / "cache", "augment.translate=2")
    return Call(train_student.main, argv, [ctx.tmp / "run"])


@case
def case_cache_other_split(ctx: Ctx) -> Call:
    argv = student_args(ctx, ctx.teacher / "cache", "data.val_size=40")
    return Call(train_student.main, argv, [ctx.tmp / "run"])


@case
def case_cache_format_version(ctx: Ctx) -> Call:
    cache = cache_copy(ctx)
    meta = json.loads((cache / "meta.json").read_text())
    (cache / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    return Call(train_student.main, student_args(ctx, cache), [ctx.tmp / "run"], [cache])


@case
def case_cache_corrupt(ctx: Ctx) -> Call:
    cache = cache_copy(ctx)
    logits = bytearray((cache / "logits.npy").read_bytes())
    logits[-1] ^= 0xFF
    (cache / "logits.npy").write_bytes(bytes(logits))
    return Call(train_student.main, student_args(ctx, cache), [ctx.tmp / "run"], [cache])


# -- recipes and models ----------------------------------------------------------------------------


@case
def case_recipe_unknown_key(ctx: Ctx) -> Call:
    return Call(train_teacher.main, teacher_args(ctx, ctx.data, "train.epochz=1"), [ctx.tmp / "run"])


@case
def case_recipe_mistyped_value(ctx: Ctx) -> Call:
    return Call(train_teacher.main, teacher_args(ctx, ctx.data, "train.epochs=many"), [ctx.tmp / "run"])


@case
def case_recipe_not_finite(ctx: Ctx) -> Call:
    return Call(train_teacher.main, teacher_args(ctx, ctx.data, "train.lr=inf"), [ctx.tmp / "run"])


@case
def case_model_kwargs_out_of_range(ctx: Ctx) -> Call:
    """A student whose kwargs make it untrainable is refused before it is built, not trained to chance."""
    argv = ["--recipe", "ce", "--output-dir", str(ctx.tmp / "run"), *tiny(ctx.data)]
    return Call(train_student.main, [*argv, "model.kwargs.logit_scale=0"], [ctx.tmp / "run"])


@case
def case_student_over_cap(ctx: Ctx) -> Call:
    argv = ["--recipe", "ce", "--output-dir", str(ctx.tmp / "run"), *tiny(ctx.data)]
    return Call(train_student.main, [*argv, "model.kwargs.widths=[64,128,256,256]"], [ctx.tmp / "run"])


# -- the run directory -----------------------------------------------------------------------------


@case
def case_output_dir_unwritable(ctx: Ctx) -> Call:
    blocker = ctx.tmp / "a-file"
    blocker.write_text("not a folder")
    argv = ["--recipe", "teacher_smoke", "--output-dir", str(blocker / "run"), *tiny(ctx.data)]
    return Call(train_teacher.main, argv, unchanged=[blocker])


def limit_file_size(limit: int) -> Callable[[], None]:
    """In the child: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored) — a full disk."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@case
def case_disk_full(ctx: Ctx) -> Call:
    run = ctx.tmp / "run"

    def check() -> None:  # the run's small files were written; no checkpoint, complete or not, was left
        assert (run / "recipe.yaml").is_file()
        assert not (run / "state").exists() and not (run / "state.tmp").exists()

    # 200 KB: the recipe and logs fit, the teacher's 312 KB of weights in the first checkpoint do not.
    argv = teacher_args(ctx, ctx.data)
    absent = [run / "state", run / "summary.json"]
    return Call(None, argv, absent, script="train_teacher.py", preexec=limit_file_size(200_000), check=check)


@case
def case_cache_disk_full(ctx: Ctx) -> Call:
    out = ctx.tmp / "cache"

    def check() -> None:  # no cache, and no temporary directory left behind
        assert sorted(p.name for p in ctx.tmp.iterdir()) == []

    # 8 KB: the 16 KB logits.npy (2 views x 400 images x 10 classes, float16) does not fit.
    argv = ["--teacher", str(ctx.teacher), "--out", str(out)]
    return Call(None, argv, [out], script="cache_logits.py", preexec=limit_file_size(8_000), check=check)


@case
def case_val_split_too_large(ctx: Ctx) -> Call:
    return Call(train_teacher.main, teacher_args(ctx, ctx.data, "data.val_size=400"), [ctx.tmp / "run"])


@case
def case_run_dir_in_use(ctx: Ctx) -> Call:
    run = ctx.tmp / "run"
    run.mkdir()
    holder = subprocess.Popen(["sleep", "60"])  # a live process on this host holds the lock
    (run / ".lock").write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}))

    def check() -> None:
        holder.kill()
        holder.wait()
        train_teacher.main(teacher_args(ctx, ctx.data))  # the lock of a dead process is stale: taken over
        assert not (run / ".lock").exists() and (run / "summary.json").is_file()

    return Call(train_teacher.main, teacher_args(ctx, ctx.data), unchanged=[run], check=check)


@case
def case_resume_other_data(ctx: Ctx) -> Call:
    run = ctx.unfinished_student()
    other = ctx.tmp / "other-data"
    write_batches(other, synthetic_split(400, 7), synthetic_split(200, 1))  # same size, other images
    argv = [*student_args(ctx, ctx.teacher / "cache", out=run), "--resume", "--data-dir", str(other)]
    return Call(train_student.main, argv, unchanged=[run])


@case
def case_resume_nothing(ctx: Ctx) -> Call:
    (ctx.tmp / "run").mkdir()
    return Call(train_teacher.main, [*teacher_args(ctx, ctx.data), "--resume"], unchanged=[ctx.tmp / "run"])


@case
def case_resume_other_recipe(ctx: Ctx) -> Call:
    run = ctx.unfinished_student()
    argv = [*student_args(ctx, ctx.teacher / "cache", "train.lr=0.05", out=run), "--resume"]
    return Call(train_student.main, argv, unchanged=[run])


class NaNAfter:
    """Wraps the loss: from call ``n`` on, the loss is NaN (as after a divergence)."""

    def __init__(self, loss: torch.nn.Module, n: int):
        self.loss, self.n, self.calls = loss, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        out = self.loss(*args, **kwargs)
        if self.calls >= self.n:
            out["loss"] = out["loss"] * float("nan")
        return out


@case
def case_loss_nan(ctx: Ctx) -> Call:
    import distill.trainer as trainer

    real = trainer.KDLoss
    ctx.monkeypatch.setattr(trainer, "KDLoss", lambda **kw: NaNAfter(real(**kw), n=8 + 3))  # epoch 2, step 3
    run = ctx.tmp / "run"

    def check() -> None:
        progress = json.loads((run / "state" / "progress.json").read_text())
        assert progress["epoch"] == 1  # the last good checkpoint is kept
        assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1]
        ctx.monkeypatch.setattr(trainer, "KDLoss", real)
        [result] = train_teacher.main(["--output-dir", str(run), "--resume", f"data.dir={ctx.data}"])
        assert result.summary["epochs"] == 2  # and --resume finishes from it

    absent = [run / "summary.json", run / "model.safetensors"]
    return Call(train_teacher.main, teacher_args(ctx, ctx.data), absent, check=check)


@case
def case_loss_nan_before_checkpoint(ctx: Ctx) -> Call:
    """Diverging in the first epoch: no checkpoint is promised, since none was written."""
    import distill.trainer as trainer

    real = trainer.KDLoss
    ctx.monkeypatch.setattr(trainer, "KDLoss", lambda **kw: NaNAfter(real(**kw), n=3))  # epoch 1, step 3
    run = ctx.tmp / "run"
    return Call(train_teacher.main, teacher_args(ctx, ctx.data), [run / "state", run / "summary.json"])


def _ctrl_c(*args, **kwargs):
    """Stands in for a function that the user's Ctrl-C stops."""
    raise KeyboardInterrupt


@case
def case_interrupted_before_checkpoint(ctx: Ctx) -> Call:
    """Ctrl-C in the first epoch: there is no checkpoint yet, so the line says to run again, not to --resume."""
    from distill import engine

    ctx.monkeypatch.setattr(engine, "train_one_epoch", _ctrl_c)
    run = ctx.tmp / "run"

    def check() -> None:
        assert not (run / ".lock").exists()
        ctx.monkeypatch.undo()
        train_teacher.main(teacher_args(ctx, ctx.data))  # and running it again works

    return Call(
        train_teacher.main, teacher_args(ctx, ctx.data), [run / "state"], check=check, code=130, prefix="stopped: "
    )


@case
def case_checkpoint_runs_code(ctx: Ctx) -> Call:
    run = ctx.unfinished_student()
    sentinel = ctx.tmp / "pwned"
    torch.save({"state": RunsCode(sentinel)}, run / "state" / "optimizer.bin")
    argv = [*student_args(ctx, ctx.teacher / "cache", out=run), "--resume"]
    return Call(train_student.main, argv, [sentinel], [run])


@case
def case_export_unfinished_run(ctx: Ctx) -> Call:
    return export_call(ctx, {b"data": np.zeros((4, 32, 32, 3), np.uint8)}, run=ctx.unfinished_student())


@case
def case_weights_corrupt(ctx: Ctx) -> Call:
    run = ctx.tmp / "student"
    shutil.copytree(ctx.student, run)
    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return export_call(ctx, {b"data": np.zeros((4, 32, 32, 3), np.uint8)}, run=run)


@case
def case_export_folder_missing(ctx: Ctx) -> Call:
    out = ctx.tmp / "no" / "such" / "folder" / "submission.csv"
    return export_call(ctx, {b"data": np.zeros((4, 32, 32, 3), np.uint8)}, out=out)


# -- the transfer set, the final fit on all labels, test-time BatchNorm ------------------------------


def unlabeled_file(ctx: Ctx, images: np.ndarray, name: str = "unlabeled.npy") -> Path:
    path = ctx.tmp / name
    np.save(path, images)
    return path


def transfer_cache(ctx: Ctx, files: list[Path]) -> Path:
    out = ctx.tmp / "transfer_cache"
    argv = ["--teacher", str(ctx.teacher), "--out", str(out), *tiny(ctx.data)]
    cache_logits.main([*argv, *(a for f in files for a in ("--unlabeled", str(f)))])
    return out


@case
def case_unlabeled_missing(ctx: Ctx) -> Call:
    argv = student_args(ctx, ctx.teacher / "cache", "--unlabeled", str(ctx.tmp / "no_such.npy"))
    return Call(train_student.main, argv, [ctx.tmp / "run"])


def student_on(ctx: Ctx, images: np.ndarray, cache: Path | None = None) -> Call:
    """A KD student whose transfer set is ``images`` (as a .npy); the run dir must not appear."""
    path = unlabeled_file(ctx, images)
    argv = student_args(ctx, cache or ctx.teacher / "cache", "--unlabeled", str(path))
    return Call(train_student.main, argv, [ctx.tmp / "run"])


@case
def case_unlabeled_empty(ctx: Ctx) -> Call:
    return student_on(ctx, np.zeros((0, 32, 32, 3), np.uint8))


@case
def case_unlabeled_wrong_shape(ctx: Ctx) -> Call:
    return student_on(ctx, np.zeros((8, 32, 32), np.uint8))


@case
def case_unlabeled_wrong_dtype(ctx: Ctx) -> Call:
    return student_on(ctx, np.zeros((8, 32, 32, 3), np.float32))


@case
def case_unlabeled_without_kd(ctx: Ctx) -> Call:
    path = unlabeled_file(ctx, synthetic_split(40, 5).images)
    argv = student_args(ctx, ctx.teacher / "cache", "kd.alpha=0", "--unlabeled", str(path))
    return Call(train_student.main, argv, [ctx.tmp / "run"])


@case
def case_cache_without_transfer_set(ctx: Ctx) -> Call:
    return student_on(ctx, synthetic_split(40, 5).images)


@case
def case_cache_other_transfer_set(ctx: Ctx) -> Call:
    cache = transfer_cache(ctx, [unlabeled_file(ctx, synthetic_split(40, 5).images)])
    other = unlabeled_file(ctx, synthetic_split(40, 6).images, "other.npy")
    return Call(train_student.main, student_args(ctx, cache, "--unlabeled", str(other)), [ctx.tmp / "run"], [cache])


@case
def case_cache_has_transfer_set(ctx: Ctx) -> Call:
    cache = transfer_cache(ctx, [unlabeled_file(ctx, synthetic_split(40, 5).images)])
    return Call(train_student.main, student_args(ctx, cache), [ctx.tmp / "run"], [cache])


@case
def case_train_on_test_without_val(ctx: Ctx) -> Call:
    return Call(train_teacher.main, teacher_args(ctx, ctx.data, "data.train_on_test=true"), [ctx.tmp / "run"])


@case
def case_evaluate_trained_on_test(ctx: Ctx) -> Call:
    run = ctx.tmp / "final_fit"
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(run), *tiny(ctx.data, "data.train_on_test=true",
                        "data.val_size=50", "train.epochs=1", "cache.views=0")])  # fmt: skip
    return Call(evaluate.main, ["--run", str(run)], [run / "shift"], [run])


@case
def case_bn_stats_few_images(ctx: Ctx) -> Call:
    call = export_call(ctx, {b"data": synthetic_split(100, 3).images})
    call.argv += ["--bn-stats", "test"]
    return call


# -- nothing lost, nothing stale (issue 20) --------------------------------------------------------


@case
def case_interrupted_while_caching(ctx: Ctx) -> Call:
    """Ctrl-C while the cache is built: the line starts ``stopped:`` (exit 130) and no cache appears."""
    from distill import logit_cache

    ctx.monkeypatch.setattr(logit_cache, "_teacher_logits", _ctrl_c)
    out = ctx.tmp / "cache"
    argv = ["--teacher", str(ctx.teacher), "--out", str(out), *tiny(ctx.data)]
    return Call(cache_logits.main, argv, [out], code=130, prefix="stopped: ")


@case
def case_interrupted_export(ctx: Ctx) -> Call:
    from distill import engine

    ctx.monkeypatch.setattr(engine, "predict_logits", _ctrl_c)
    call = export_call(ctx, {b"data": np.zeros((4, 32, 32, 3), np.uint8)})
    call.code, call.prefix = 130, "stopped: "
    return call


@case
def case_export_out_is_the_test_pickle(ctx: Ctx) -> Call:
    pkl = ctx.tmp / "test.pkl"
    pkl.write_bytes(pickle.dumps({b"data": np.zeros((4, 32, 32, 3), np.uint8)}))
    link = ctx.tmp / "link.pkl"
    link.symlink_to(pkl)  # the same file through a link
    argv = ["--run", str(ctx.student), "--test-pkl", str(pkl), "--out", str(link)]
    return Call(export.main, argv, unchanged=[pkl])


@case
def case_cache_out_is_the_teacher(ctx: Ctx) -> Call:
    teacher = ctx.tmp / "teacher"
    shutil.copytree(ctx.teacher, teacher)
    argv = ["--teacher", str(teacher), "--out", str(teacher), *tiny(ctx.data)]
    return Call(cache_logits.main, argv, unchanged=[teacher])


@case
def case_cache_split_leak(ctx: Ctx) -> Call:
    """The teacher trained on every training image; a cache holding out a validation split would let its
    student be measured on images the teacher trained on."""
    out = ctx.tmp / "cache"
    argv = ["--teacher", str(ctx.teacher), "--out", str(out), *tiny(ctx.data, "data.val_size=40")]
    return Call(cache_logits.main, argv, [out])


@case
def case_student_recipe_is_a_teacher(ctx: Ctx) -> Call:
    from distill import run

    pkl = ctx.tmp / "test.pkl"
    pkl.write_bytes(pickle.dumps({b"data": np.zeros((4, 32, 32, 3), np.uint8)}))
    argv = ["--student-recipe", "teacher_smoke", "--test-pkl", str(pkl), "--out", str(ctx.tmp / "s.csv")]
    return Call(run.main, [*argv, "--runs-dir", str(ctx.tmp / "runs"), *tiny(ctx.data)], [ctx.tmp / "runs"])


@case
def case_report_out_is_a_file(ctx: Ctx) -> Call:
    from distill import report

    out = ctx.tmp / "notes.txt"
    out.write_text("mine")
    return Call(report.main, [str(ctx.student), "--out", str(out), "--data-dir", str(ctx.data)], unchanged=[out])


@case
def case_report_weights_corrupt(ctx: Ctx) -> Call:
    """A run whose weights are damaged: the report fails whole, leaving no half-written report/."""
    from distill import report

    run = ctx.tmp / "student"
    shutil.copytree(ctx.student, run)
    (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:1000])
    out = ctx.tmp / "report"
    call = Call(report.main, [str(ctx.teacher), str(run), "--out", str(out), "--data-dir", str(ctx.data)], [out])
    call.check = lambda: not list(ctx.tmp.glob(".report.*")) or pytest.fail("a staging dir was left behind")
    return call


@case
def case_ensemble_into_a_single_teacher(ctx: Ctx) -> Call:
    """``--seeds 2`` into a finished single-teacher run would replace the cache its students were trained on."""
    teacher = ctx.tmp / "teacher"
    shutil.copytree(ctx.teacher, teacher)
    argv = ["--recipe", "teacher_smoke", "--output-dir", str(teacher), "--seeds", "2", *tiny(ctx.data)]
    return Call(train_teacher.main, argv, [teacher / "seed0"], [teacher])


# -- the test --------------------------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run_call(call: Call, capsys) -> tuple[int, str]:
    if call.script:
        proc = python(f"distill/{call.script}", *call.argv, preexec=call.preexec)
        return proc.returncode, proc.stderr
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(lambda: call.main(call.argv))
    return exit_info.value.code, capsys.readouterr().err


def test_readme_table_is_the_tested_table():
    assert len(readme_cases()) >= 15
    assert set(readme_cases()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, runs, synthetic_dir, tmp_path, monkeypatch, capsys):
    expected = readme_cases()[name]
    ctx = Ctx(tmp_path, synthetic_dir, *runs, monkeypatch)
    call = CASES[name](ctx)
    before = {str(p): snapshot(p) for p in call.unchanged}
    code, stderr = run_call(call, capsys)
    assert code == call.code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith(call.prefix)]
    assert len(errors) == 1, stderr[-3000:]
    assert expected in errors[0], errors[0]
    for path in call.absent:
        assert not path.exists(), f"{path} was written"
    assert {str(p): snapshot(p) for p in call.unchanged} == before
    if call.check:
        call.check()


def test_only_the_main_process_prints_a_shared_error_but_each_prints_its_own(monkeypatch, capsys):
    from distill.errors import ProcessFileError, UserError

    def fails(err):
        def main():
            raise err

        return main

    for rank, err, printed in [
        ("0", UserError("bad input"), "error: bad input\n"),
        ("1", UserError("bad input"), ""),  # rank 0 says it
        ("1", ProcessFileError("state/random_states_1.pkl is damaged"), "error: [rank 1] state/random_states_1.pkl"),
    ]:
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as exit_info:
            cli_main(fails(err))
        err_text = capsys.readouterr().err
        assert exit_info.value.code == 2 and (err_text.startswith(printed) if printed else err_text == "")
