"""Issue 20: nothing lost, nothing stale. Caches and runs are judged by what they contain, not by their paths;
the one command never overwrites its own results and says, in its own flags' words, what it does and why."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from distill import run, train_teacher
from distill.data import load_cifar10, write_batches
from distill.errors import UserError
from distill.logit_cache import LogitCache
from tests.conftest import synthetic_split, tiny


def job(tmp_path, test_pkl, synthetic_dir, *extra, dry_run=False):
    argv = ["--student-recipe", "kd_smoke", "--test-pkl", str(test_pkl), "--out", str(tmp_path / "sub.csv")]
    argv += ["--runs-dir", str(tmp_path / "runs"), *(["--dry-run"] if dry_run else []), *tiny(synthetic_dir, *extra)]
    return run.main(argv)


def files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_batches_are_checked_against_cifar10s_own(tmp_path, capsys):
    from distill.data import _CHECKED

    train, test = synthetic_split(400, 0), synthetic_split(200, 1)
    write_batches(tmp_path / "a", train, test)
    load_cifar10(tmp_path / "a", download=False)
    err = capsys.readouterr().err
    assert "data_batch_1 is not CIFAR-10's official data_batch_1" in err and "test_batch is not" in err
    load_cifar10(tmp_path / "a", download=False)
    assert capsys.readouterr().err == ""  # once per process
    write_batches(tmp_path / "b", train, test, per_batch=80)
    shutil.copy(
        tmp_path / "b" / "cifar-10-batches-py" / "data_batch_5", tmp_path / "b" / "cifar-10-batches-py" / "test_batch"
    )
    load_cifar10(tmp_path / "b", download=False)
    err = capsys.readouterr().err
    assert "data_batch_5 and" in err and "test_batch hold the same images and labels" in err
    assert "80 images of" in err and "are also training images" in err
    assert _CHECKED


def test_the_official_batches_pass_without_a_word(real_data_dir, capsys):
    load_cifar10(real_data_dir, download=False)
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow  # whole distill-run jobs, 20-40 s each
def test_an_ensemble_goes_into_its_own_directory(tmp_path, test_pkl, synthetic_dir):
    """kd.teacher_seeds 2 -> 1 -> 2: the single teacher trains beside the ensemble, whose cache stays as it was."""
    job(tmp_path, test_pkl, synthetic_dir, "kd.teacher_seeds=2", "train.epochs=1")
    runs = tmp_path / "runs"
    ensemble = files(runs / "teacher_smoke-x2")
    assert (runs / "teacher_smoke-x2" / "seed1" / "summary.json").is_file()
    shutil.rmtree(runs / "kd_smoke")  # a student for the single teacher (the old one would be refused)
    job(tmp_path, test_pkl, synthetic_dir, "kd.teacher_seeds=1", "train.epochs=1")
    assert (runs / "teacher_smoke" / "summary.json").is_file()
    assert files(runs / "teacher_smoke-x2") == ensemble
    assert len(LogitCache.load(runs / "teacher_smoke-x2" / "cache").meta["teachers"]) == 2
    # the ensemble's parent directory given as one run: named with its members
    from distill import cache_logits

    with pytest.raises(
        UserError, match=r"is the directory of an ensemble of 2 \(seed0, seed1\).*--teacher .*seed0 --teacher"
    ):
        cache_logits.main(["--teacher", str(runs / "teacher_smoke-x2"), "--out", str(tmp_path / "c")])


@pytest.mark.slow  # five teacher runs
def test_train_teacher_keeps_one_layout_per_directory(synthetic_dir, tmp_path):
    out = tmp_path / "teacher"
    args = [
        "--recipe",
        "teacher_smoke",
        "--output-dir",
        str(out),
        *tiny(synthetic_dir, "train.epochs=1", "cache.views=1"),
    ]
    train_teacher.main(args)
    before = files(out)
    with pytest.raises(UserError, match="holds a single teacher; train the ensemble of 2 into another --output-dir"):
        train_teacher.main([*args, "--seeds", "2", "--resume"])
    assert files(out) == before
    ens = tmp_path / "ens"
    args = [
        "--recipe",
        "teacher_smoke",
        "--output-dir",
        str(ens),
        *tiny(synthetic_dir, "train.epochs=1", "cache.views=1"),
    ]
    train_teacher.main([*args, "--seeds", "2"])
    with pytest.raises(UserError, match="holds an ensemble of 2 teachers"):
        train_teacher.main(args)
    train_teacher.main([*args, "--seeds", "3", "--resume"])  # grows the ensemble: not "nothing to resume"
    assert len(LogitCache.load(ens / "cache").meta["teachers"]) == 3
    with pytest.raises(UserError, match="complete; nothing to resume"):
        train_teacher.main([*args, "--seeds", "3", "--resume"])


def retrain_in_place(teacher_dir):
    """What a teacher trained again in place looks like to the next stage: other weights, same recipe."""
    weights = load_file(str(teacher_dir / "model.safetensors"))
    save_file(
        {k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()},
        str(teacher_dir / "model.safetensors"),
    )


@pytest.mark.slow  # whole distill-run jobs, 20-40 s each
def test_a_student_of_a_changed_teacher_is_refused_not_reused(tmp_path, test_pkl, synthetic_dir, capsys):
    job(tmp_path, test_pkl, synthetic_dir)
    runs = tmp_path / "runs"
    student = files(runs / "kd_smoke")
    retrain_in_place(runs / "teacher_smoke")
    capsys.readouterr()
    with pytest.raises(UserError, match="was trained on cache .* move .* aside"):
        job(tmp_path, test_pkl, synthetic_dir, dry_run=True)
    with pytest.raises(UserError, match="is to be rebuilt .*teacher weights"):
        job(tmp_path, test_pkl, synthetic_dir)
    assert files(runs / "kd_smoke") == student  # refused before anything was touched
    shutil.rmtree(runs / "kd_smoke")
    plan = job(tmp_path, test_pkl, synthetic_dir, dry_run=True)["plan"]
    said = capsys.readouterr().out
    assert [(s["name"], s["action"]) for s in plan][:3] == [
        ("teacher", "reuse"),
        ("cache", "rebuild"),
        ("student", "train"),
    ]
    assert "would cache: rebuild" in said and "teacher weights" in said and "cache_logits.py --teacher" in said  # uncut
    job(tmp_path, test_pkl, synthetic_dir)
    recorded = json.loads((runs / "kd_smoke" / "run.json").read_text())["teacher_cache_key"]
    assert recorded == LogitCache.load(runs / "teacher_smoke" / "cache").key


@pytest.mark.slow  # whole distill-run jobs, 20-40 s each
def test_a_copied_runs_dir_is_judged_by_its_own_weights(tmp_path, test_pkl, synthetic_dir, capsys):
    job(tmp_path, test_pkl, synthetic_dir)
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "runs", copy / "runs")  # the cache records the original's paths
    retrain_in_place(copy / "runs" / "teacher_smoke")
    shutil.rmtree(copy / "runs" / "kd_smoke")
    capsys.readouterr()
    plan = job(copy, test_pkl, synthetic_dir, dry_run=True)["plan"]
    assert plan[1]["action"] == "rebuild" and "teacher weights" in plan[1]["why"]
    with pytest.raises(UserError, match="the teacher stage with a recipe other than .* give another --runs-dir"):
        job(copy, test_pkl, synthetic_dir, "train.epochs=3", dry_run=True)  # the job's own flags, not --output-dir


def test_dry_run_says_what_it_would_do_and_does_nothing(tmp_path, test_pkl, synthetic_dir, capsys):
    plan = job(tmp_path, test_pkl, synthetic_dir, dry_run=True)["plan"]
    assert [(s["name"], s["action"]) for s in plan] == [
        ("teacher", "train"), ("cache", "build"), ("student", "train"), ("report", "write"), ("csv", "write"),
    ]  # fmt: skip
    assert "would teacher: train" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sub.csv").exists()


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        run.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: kd_t4)" in text and "(default: runs)" in text and "--dry-run" in text


@pytest.mark.slow  # whole distill-run jobs, 20-40 s each
def test_a_stopped_job_says_to_run_the_same_command(tmp_path, test_pkl, synthetic_dir, monkeypatch, capsys):
    from distill import engine
    from distill.errors import Stopped

    calls = []
    real = engine.train_one_epoch

    def interrupt_the_student(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:  # teacher epochs 1, 2; student epoch 1 done; Ctrl-C in the student's epoch 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupt_the_student)
    with pytest.raises(Stopped, match="run the same distill-run command again to continue"):
        job(tmp_path, test_pkl, synthetic_dir, "train.checkpoint_every=1")


def test_the_run_estimates_its_time_early(synthetic_dir, tmp_path, capsys):
    from distill import train_student

    overrides = tiny(synthetic_dir, "train.batch_size=10", "train.epochs=1")
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ce"), *overrides])
    out = capsys.readouterr().out
    assert "estimate:" in out and "s a step, so the 1 epoch left (40 steps) take about" in out

    # on a CPU it comes after the third step, not the twentieth (a 60-epoch teacher showed none within 100 s)
    import pytest

    from distill import engine, trainer

    steps, at = [], []
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(engine, "failpoint", lambda name: steps.append(name) if name == "train.step" else None)
    real = trainer._estimate
    monkeypatch.setattr(trainer, "_estimate", lambda run, s: at.append(len(steps)) or real(run, s))
    try:
        train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ce2"), *overrides])
        assert at == [3]
        train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ce3"), *overrides[:-2],
                            "train.batch_size=200", "train.epochs=1"])  # fmt: skip
        assert at == [3, len(steps)]  # an epoch of 2 steps gets its estimate at its last
    finally:
        monkeypatch.undo()


def test_a_log_gets_lines_not_blank_screens(capsys):
    """Where output is not a terminal (a log, SLURM), predicting prints its one line and no progress bar."""
    import torch

    from distill.compute import Compute
    from distill.engine import predict

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    model(torch.zeros(1, 3, 32, 32))
    for k in range(5):
        predict(model, synthetic_split(64, k).images, None, what=f"set {k}", compute=Compute.resolve("no"))
    out = capsys.readouterr().out
    assert out.count("\n") == 5 and "\n\n" not in out and all(line.startswith("set ") for line in out.splitlines())


@pytest.mark.slow  # a whole distill-run job
def test_a_damaged_finished_run_is_reported_alike_by_dry_run_and_run(tmp_path, test_pkl, synthetic_dir):
    """Truncated weights of a finished student: --dry-run refuses as the real run does, saying what to do, and
    the real run writes nothing (the report and CSV are not made from a file that cannot be read)."""
    job(tmp_path, test_pkl, synthetic_dir)
    weights = tmp_path / "runs" / "kd_smoke" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (tmp_path / "sub.csv").unlink()
    for dry in (True, False):
        with pytest.raises(UserError, match=r"kd_smoke is finished but its model.safetensors is damaged .*move .* aside "
                                            r"\(or delete it\) and run the same distill-run command again"):  # fmt: skip
            job(tmp_path, test_pkl, synthetic_dir, dry_run=dry)
    assert not (tmp_path / "sub.csv").exists()


def test_a_full_disk_under_distill_run_speaks_distill_runs_words(tmp_path):
    """distill-run has no --resume: its messages say what its user can type (errors.speaking)."""
    from distill.errors import DISTILL_RUN, UserError, speaking
    from distill.runs import append_metrics

    (tmp_path / "metrics.jsonl").mkdir()  # a write that fails, as on a full disk
    with speaking(DISTILL_RUN), pytest.raises(UserError) as caught:
        append_metrics(tmp_path, {"epoch": 1})
    assert "run the same distill-run command again to continue" in str(caught.value)
    assert "--resume" not in str(caught.value)
    with pytest.raises(UserError, match="then pass --resume to continue"):  # the stage commands' own words
        append_metrics(tmp_path, {"epoch": 1})


def test_a_cache_says_its_first_view_set_and_stops_whole_on_sigterm(synthetic_dir, tmp_path, monkeypatch, capsys):
    """A large cache.views printed nothing for 45 s, and SIGTERM there ended without a stopped: line."""
    import signal

    from distill import cache_logits, engine, train_teacher
    from distill.errors import Stopped

    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(tmp_path / "t"), *tiny(synthetic_dir)])
    capsys.readouterr()
    calls = []

    def term_after_two(self, accelerator):
        calls.append(1)
        return signal.SIGTERM if len(calls) >= 2 else 0

    monkeypatch.setattr(engine.StopRequest, "agreed", term_after_two)
    with pytest.raises(Stopped, match="SIGTERM received after view set 2 of 16; the cache was not written") as caught:
        cache_logits.main(["--teacher", str(tmp_path / "t"), "--out", str(tmp_path / "c"), "cache.views=16"])
    assert caught.value.exit_code == 128 + signal.SIGTERM and not (tmp_path / "c").exists()
    assert "cache: view set 1/16" in capsys.readouterr().out  # the first view set is said, not only every 16 / 8
