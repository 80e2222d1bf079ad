"""distill-run: nothing -> teacher -> cache -> student -> report -> CSV, every stage skipped once done."""

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest

from distill import run
from distill.data import load_cifar10
from distill.errors import UserError
from distill.recipe import dump_recipe, load_recipe
from tests.conftest import accelerate_launch, python, tiny


@pytest.fixture()
def test_pkl(synthetic_dir, tmp_path):
    _, test = load_cifar10(synthetic_dir, download=False)
    path = tmp_path / "test.pkl"
    path.write_bytes(pickle.dumps({b"data": test.images[:50], b"ids": np.arange(50) + 7}))
    return path


def pipeline(tmp_path, test_pkl, synthetic_dir, recipe="kd_smoke", *extra):
    out = tmp_path / "submission.csv"
    argv = ["--student-recipe", str(recipe), "--test-pkl", str(test_pkl), "--out", str(out)]
    return run.main([*argv, "--runs-dir", str(tmp_path / "runs"), *tiny(synthetic_dir, *extra)]), out


def test_one_command_from_nothing_to_a_submission(tmp_path, test_pkl, synthetic_dir, capsys):
    check, out = pipeline(tmp_path, test_pkl, synthetic_dir)
    said = capsys.readouterr().out
    assert (
        "teacher: train " in said and "student: train " in said and "distill-run: cache:" not in said
    )  # built with it
    runs = tmp_path / "runs"
    for path in ("teacher_smoke/summary.json", "teacher_smoke/cache/meta.json", "kd_smoke/summary.json",
                 "kd_smoke/report/report.md"):  # fmt: skip
        assert (runs / path).is_file(), path
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["ID", "Labels"] and len(rows) == 51 and check["rows"] == 50
    first = out.read_bytes()
    # again: every stage is finished, so each is skipped and says so; the CSV comes out the same
    pipeline(tmp_path, test_pkl, synthetic_dir)
    said = capsys.readouterr().out
    for line in ("teacher: reuse", "cache: reuse", "student: reuse", "report: leave"):
        assert f"distill-run: {line} " in said, said
    assert ": train " not in said and out.read_bytes() == first


def test_a_stopped_student_resumes_and_other_views_get_their_own_cache(tmp_path, test_pkl, synthetic_dir, capsys):
    student = tmp_path / "kd_t2px.yaml"  # the smoke student on other views than its teacher's
    student.write_text(dump_recipe(load_recipe("kd_smoke", ["augment.translate=2", "name=kd_t2px"])))
    pipeline(tmp_path, test_pkl, synthetic_dir, student, "train.checkpoint_every=1")
    runs = tmp_path / "runs"
    [cache] = (runs / "teacher_smoke").glob("cache-kd_t2px-*")  # keyed by the student's views
    assert (cache / "meta.json").is_file()
    assert not (runs / "teacher_smoke" / "cache").exists()  # only the cache the student needs is built
    (runs / "kd_t2px" / "summary.json").unlink()  # as if stopped after its last checkpoint
    (runs / "kd_t2px" / "model.safetensors").unlink()
    capsys.readouterr()
    pipeline(tmp_path, test_pkl, synthetic_dir, student, "train.checkpoint_every=1")
    said = capsys.readouterr().out
    assert "student: resume " in said and "teacher: reuse " in said
    assert (runs / "kd_t2px" / "summary.json").is_file()


def test_inputs_are_checked_before_any_stage(tmp_path, synthetic_dir, test_pkl):
    with pytest.raises(UserError, match="is a directory"):
        run.main(["--test-pkl", str(test_pkl), "--out", str(tmp_path), "--runs-dir", str(tmp_path / "r")])
    with pytest.raises(UserError, match="file not found"):
        run.main(["--test-pkl", str(tmp_path / "nope.pkl"), "--runs-dir", str(tmp_path / "r")])
    with pytest.raises(UserError, match="output dir /proc cannot be written"):  # before the teacher trains
        run.main(["--test-pkl", str(test_pkl), "--out", "/proc/submission.csv", "--runs-dir", str(tmp_path / "r")])
    with pytest.raises(UserError, match="names no kd.teacher"):
        pipeline(tmp_path, test_pkl, synthetic_dir, "kd_smoke", "kd.teacher=''")
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_one_command_under_accelerate_launch_with_two_processes(tmp_path, test_pkl, synthetic_dir):
    out = tmp_path / "sub.csv"
    args = ["--student-recipe", "kd_smoke", "--test-pkl", str(test_pkl), "--out", str(out)]
    proc = accelerate_launch("-m", "distill", *args, "--runs-dir", str(tmp_path / "runs"), *tiny(synthetic_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list(csv.reader(out.open()))) == 51


@pytest.mark.slow
def test_one_command_on_real_data_with_the_smoke_recipes(real_data_dir, tmp_path):
    _, test = load_cifar10(real_data_dir, download=False)
    pkl = tmp_path / "cifar_test_nolabel.pkl"
    pkl.write_bytes(pickle.dumps({b"data": test.images[:500], b"ids": np.arange(500)}))
    out = tmp_path / "submission.csv"
    argv = ["-m", "distill", "--student-recipe", "kd_smoke", "--test-pkl", str(pkl), "--out", str(out)]
    proc = python(*argv, "--runs-dir", str(tmp_path / "runs"), "--data-dir", str(real_data_dir), "data.download=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Final test accuracy:" in proc.stdout and len(list(csv.reader(out.open()))) == 501


def test_a_student_on_its_teachers_views_uses_the_teachers_own_cache(tmp_path):
    from distill.run import _cache_path

    student, teacher = load_recipe("kd_smoke"), load_recipe("teacher_smoke")
    assert student.cache.batch_size != teacher.cache.batch_size  # how fast it was built does not matter
    assert _cache_path(teacher, student, tmp_path).name == "cache"
    assert _cache_path(load_recipe("teacher_96"), load_recipe("kd_fast94"), tmp_path).name.startswith(
        "cache-kd_fast94-"
    )


@pytest.mark.slow
def test_the_three_switches_through_distill_run_on_real_data(real_data_dir, tmp_path):
    """Issue 16 end to end: a transfer set (the test pickle itself), a final fit on all labels, test-time
    BatchNorm statistics; the job names each switch, and every stage records it."""
    import json

    _, test = load_cifar10(real_data_dir, download=False)
    pkl = tmp_path / "cifar_test_nolabel.pkl"
    pkl.write_bytes(pickle.dumps({b"data": test.images[-500:], b"ids": np.arange(500)}))  # not among the 1,000 used
    out = tmp_path / "submission.csv"
    argv = ["-m", "distill", "--student-recipe", "kd_smoke", "--test-pkl", str(pkl), "--out", str(out),
            "--unlabeled", str(pkl), "--bn-stats", "test", "--runs-dir", str(tmp_path / "runs"),
            "--data-dir", str(real_data_dir), "data.download=false", "data.train_on_test=true", "data.val_size=200"]  # fmt: skip
    proc = python(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    switches = next(line for line in proc.stdout.splitlines() if "switches in use" in line)
    assert "kd.unlabeled=" in switches and "data.train_on_test=true" in switches and "--bn-stats test" in switches
    assert "Final validation accuracy:" in proc.stdout and "test split was trained on" in proc.stdout
    summary = json.loads((tmp_path / "runs" / "kd_smoke" / "summary.json").read_text())
    assert summary["unlabeled_images"] == 500 and summary["trained_on_test"] and summary["test_accuracy"] is None
    assert summary["train_images"] == 2000 + 1000 - 200
    assert "BatchNorm statistics from these images" in proc.stdout
    assert len(list(csv.reader(out.open()))) == 501


def test_an_override_only_the_student_reads_leaves_the_teacher_as_it_is(tmp_path, test_pkl, synthetic_dir, capsys):
    """kd.* is the student's: after a finished job, kd.temperature=2 finds the teacher as it is (before, the teacher
    stage was refused as made with other overrides); the finished student, made with kd.temperature 4, is refused."""
    pipeline(tmp_path, test_pkl, synthetic_dir)
    with pytest.raises(UserError, match=r"^the student stage with a recipe other than .*kd.temperature: 4.0 -> 2.0"):
        pipeline(tmp_path, test_pkl, synthetic_dir, "kd_smoke", "kd.temperature=2")
    assert run.teacher_overrides(["kd.temperature=2", "train.lr=0.1", " kd.loss=dkd"]) == ["train.lr=0.1"]


def test_messages_speak_distill_runs_flags(tmp_path, test_pkl, synthetic_dir):
    """A stage's refusal inside distill-run names --runs-dir and "the same command", never the stage commands'
    --output-dir or --resume; the same refusal from train_student names its own flags."""
    from distill import train_student

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the runs dir should be")
    out = tmp_path / "submission.csv"
    with pytest.raises(UserError) as err:
        run.main(["--test-pkl", str(test_pkl), "--out", str(out), "--runs-dir", str(blocked / "runs"),
                  *tiny(synthetic_dir, "kd.alpha=0")])  # fmt: skip
    assert "--runs-dir" in str(err.value) and "--output-dir" not in str(err.value) and "--resume" not in str(err.value)
    with pytest.raises(UserError, match="choose another --output-dir"):
        train_student.main(["--recipe", "ce_smoke", "--output-dir", str(blocked / "ce"), *tiny(synthetic_dir)])


def test_bn_stats_test_on_too_few_images_is_refused_before_any_stage(tmp_path, test_pkl, synthetic_dir):
    with pytest.raises(UserError, match="--bn-stats test needs at least 256 images .* holds 50; leave --bn-stats"):
        pipeline(tmp_path, test_pkl, synthetic_dir, "kd_smoke", "--bn-stats", "test")
    assert not (tmp_path / "runs").exists()


def test_a_read_only_place_is_fixed_by_making_it_writable_not_by_another_flag(tmp_path):
    import errno

    from distill.files import write_error

    said = write_error(tmp_path / "x" / "summary.json", OSError(errno.EROFS, "Read-only file system"), "--runs-dir")
    assert f"make {tmp_path / 'x'} writable, or choose another --runs-dir in a folder you can write" in said


def test_each_input_file_is_read_and_hashed_once_per_command(tmp_path, test_pkl, synthetic_dir, monkeypatch):
    """One distill-run with a transfer set: the transfer set is read once and every file (the teacher's weights,
    the cache's arrays) hashed once, however many stages judge them (paths, caches, the student's check)."""
    from collections import Counter

    from distill import data, files

    hashed, reads = Counter(), Counter()
    real_read = data._read_unlabeled

    class Hashes(dict):  # each entry written is one file read through and hashed
        def __setitem__(self, stamp, digest):
            hashed[stamp] += 1
            super().__setitem__(stamp, digest)

    monkeypatch.setattr(files, "_SHA256", Hashes())
    monkeypatch.setattr(data, "_UNLABELED", {})
    monkeypatch.setattr(data, "_read_unlabeled", lambda paths: reads.update([tuple(paths)]) or real_read(paths))
    pipeline(tmp_path, test_pkl, synthetic_dir, "kd_smoke", "--unlabeled", str(test_pkl))
    assert list(reads.values()) == [1]
    assert hashed and set(hashed.values()) == {1}
    names = {Path(stamp[0]).name for stamp in hashed}
    assert {"model.safetensors", "logits.npy"} <= names


def test_the_plan_says_each_stages_time_here_and_names_the_faster_recipe_when_long(
    tmp_path, synthetic_dir, test_pkl, capsys, monkeypatch
):
    """distill-run prints an estimate per stage before the first starts; past an hour it names the fastest recipe
    (and still runs what was asked)."""
    argv = ["--test-pkl", str(test_pkl), "--runs-dir", str(tmp_path / "r"), "--dry-run", *tiny(synthetic_dir)]
    run.main(["--student-recipe", "kd_smoke", *argv])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("distill-run: estimate on this machine (cpu"))
    assert "teacher about" in line and "cache about" in line and "student about" in line and "in all" in line
    assert "over an hour" not in out
    monkeypatch.setattr(run, "probe_rate", lambda recipe, accelerator, train=True: 0.01 if train else 0.1)
    run.main(["--student-recipe", "kd_t4", *argv])
    out = capsys.readouterr().out
    assert "that is over an hour on this machine; --student-recipe kd_fast94_muon is the fastest measured" in out
    assert out.index("estimate on this machine") > out.index("would csv")  # the plan, then its time
