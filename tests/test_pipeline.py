"""End to end on tiny synthetic data: teacher -> cache -> student -> CSV, and the cache's contracts."""

import csv
import json
import pickle
import shutil

import numpy as np
import pytest
import timm
import torch

from distill import cache_logits, evaluate, export, train_student, train_teacher
from distill.augment import POLICY_OPS, AugmentSpec
from distill.data import load_cifar10
from distill.devices import make_accelerator
from distill.engine import EpochData, epoch_batches
from distill.errors import UserError
from distill.logit_cache import LogitCache, build_cache
from distill.recipe import load_recipe
from tests.conftest import synthetic_split, tiny


@pytest.fixture(scope="module")
def teacher_run(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    [result] = train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(out), *tiny(synthetic_dir)])
    return out, result


def test_teacher_run_dir(teacher_run):
    out, result = teacher_run
    for name in ("recipe.yaml", "run.json", "metrics.jsonl", "summary.json", "model.safetensors", "state"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert {"test_accuracy", "trainable_params", "epochs", "wall_seconds", "recipe", "device"} <= set(summary)
    assert summary["test_accuracy"] == result.test_accuracy
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [ln["epoch"] for ln in lines] == [1, 2]
    assert {"epoch", "lr", "train_loss", "train_acc", "test_acc", "img_per_s", "seconds"} <= set(lines[0])
    meta = json.loads((out / "cache" / "meta.json").read_text())
    assert meta["views"] == 2 and meta["data"]["num_images"] == 400
    assert [t["test_accuracy"] for t in meta["teachers"]] == [result.test_accuracy]


def test_end_to_end_student_and_csv(teacher_run, synthetic_dir, tmp_path, capsys):
    out, _ = teacher_run
    student = train_student.main(
        [
            "--recipe",
            "kd_smoke",
            "--teacher-cache",
            str(out / "cache"),
            "--output-dir",
            str(tmp_path / "kd"),
            *tiny(synthetic_dir, "train.epochs=4"),
        ]
    )
    printed = capsys.readouterr().out
    assert "Final test accuracy:" in printed and f"Trainable parameters: {student.trainable_params}" in printed
    assert student.test_accuracy > 0.3  # synthetic classes are easy; chance is 0.1
    _, test = load_cifar10(synthetic_dir, download=False)
    pkl = tmp_path / "test.pkl"
    pkl.write_bytes(pickle.dumps({b"data": test.images, b"ids": np.arange(len(test)) + 100}))
    report = export.main(["--run", str(tmp_path / "kd"), "--test-pkl", str(pkl), "--out", str(tmp_path / "sub.csv")])
    rows = list(csv.reader((tmp_path / "sub.csv").open()))
    assert rows[0] == ["ID", "Labels"]
    assert [int(r[0]) for r in rows[1:]] == list(range(100, 100 + len(test)))
    assert all(0 <= int(r[1]) <= 9 for r in rows[1:])
    assert report["rows"] == len(test) and sum(report["histogram"]) == len(test)
    accuracy = np.mean([int(r[1]) for r in rows[1:]] == test.labels)
    assert accuracy == pytest.approx(student.test_accuracy, abs=0.02)  # same weights, same TTA
    # evaluate.py scores the saved weights under each TTA; the recipe's (flip) is what the run reported
    by_tta = evaluate.main(["--run", str(tmp_path / "kd")])
    assert set(by_tta) == {"none", "flip", "flip+shift1"} and all(0 <= v <= 1 for v in by_tta.values())
    assert by_tta["flip"] == pytest.approx(student.test_accuracy, abs=1e-6)
    assert "flip+shift1" in capsys.readouterr().out


def test_ce_baseline_needs_no_cache(synthetic_dir, tmp_path):
    result = train_student.main(
        [
            "--recipe",
            "ce_smoke",
            "--output-dir",
            str(tmp_path / "ce"),
            *tiny(synthetic_dir, "train.epochs=3", "train.eval_every=2"),
        ]
    )
    assert json.loads((tmp_path / "ce" / "summary.json").read_text())["teacher_cache"] is None
    assert 0 <= result.test_accuracy <= 1
    tested = [json.loads(ln)["test_acc"] for ln in (tmp_path / "ce" / "metrics.jsonl").read_text().splitlines()]
    assert tested[0] is None and tested[1] is not None and tested[2] is not None  # only evaluated epochs


def test_kd_without_cache_is_refused(synthetic_dir, tmp_path):
    with pytest.raises(UserError, match="needs --teacher-cache"):
        train_student.main(["--recipe", "kd_smoke", "--output-dir", str(tmp_path / "kd"), *tiny(synthetic_dir)])
    assert not (tmp_path / "kd").exists()


class Recording(torch.nn.Module):
    """A tiny real teacher that remembers every input it was given."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = timm.create_model("cifar_air_tiny", num_classes=10)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.net(x)


REPLAY_SPECS = {
    "translate_flip": AugmentSpec(translate=4),
    "alternate_flip": AugmentSpec(translate=2, alternate_flip=True),
    "cutout": AugmentSpec(translate=2, cutout=8),
    **{f"policy_{op}": AugmentSpec(translate=2, policy="trivial") for op in POLICY_OPS},
    "policy_wide": AugmentSpec(policy="trivial_wide"),
    "mixup": AugmentSpec(translate=2, mixup_alpha=1.0),
    "cutmix": AugmentSpec(translate=2, cutmix_alpha=1.0),
    "everything": AugmentSpec(translate=4, cutout=12, policy="trivial", mixup_alpha=0.3, cutmix_alpha=1.0),
}


@pytest.mark.parametrize("case", REPLAY_SPECS)
def test_replay_is_bit_identical_and_logits_are_the_teachers(case, tmp_path):
    """For each op: the student's view of an image in any epoch equals, bit for bit, what the teacher saw
    for that view set, and its cached logit equals a fresh forward pass of the teacher on it."""
    spec, n, views = REPLAY_SPECS[case], 96, 2
    split = synthetic_split(n, 5)
    accelerator = make_accelerator(load_recipe("kd_smoke"))
    teacher = Recording()
    info = [{"model": "cifar_air_tiny", "weights_sha256": "x"}]
    build_cache([teacher], split, spec, views, seed=7, batch_size=32, accelerator=accelerator,
                out_dir=tmp_path / "cache", teacher_info=info)  # fmt: skip
    cache = LogitCache.load(tmp_path / "cache")
    images, labels = torch.from_numpy(split.images), torch.from_numpy(split.labels)
    checked = 0
    for epoch in range(2 * views):
        seen = torch.cat(teacher.seen[(epoch % views) * 3 : (epoch % views + 1) * 3])  # view set k, in image order
        logits, arrays = cache.epoch_arrays(epoch)
        view = {k: torch.from_numpy(v) for k, v in arrays.items()}
        data = EpochData(images, labels, view, torch.from_numpy(logits))
        for batch in epoch_batches(data, spec, 24, seed=1, epoch=epoch, accelerator=accelerator):  # other batches
            keep = torch.ones(len(batch.index), dtype=torch.bool)
            if case.startswith("policy_") and case != "policy_wide":
                keep = view["op"][batch.index] == POLICY_OPS.index(case.removeprefix("policy_"))
            assert torch.equal(batch.x[keep], seen[batch.index[keep]])
            with torch.inference_mode(), accelerator.autocast():  # in the cache's precision (bf16 on this CPU)
                fresh = teacher.net(batch.x[keep]).float().half()
            torch.testing.assert_close(batch.teacher_logits[keep], fresh, atol=2e-3, rtol=2e-3)
            if spec.mixes:
                assert torch.equal(batch.y_partner, labels[view["partner"][batch.index].long()])
                assert torch.equal(batch.lam, view["lam"][batch.index])
            checked += int(keep.sum())
    assert checked >= 4  # the op did occur
    if spec.mixes:
        assert (view["lam"] < 1).any()


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.train_limit=300", "was built on 400 training images"),
        ("augment.cutout=8", "has augmentation"),
        ("cache.views=3", "has 2 view sets"),
        ("cache.seed=1", "its views were drawn with cache.seed=0, the recipe says cache.seed=1"),  # once ignored
    ],
)
def test_mismatched_cache_is_refused(teacher_run, synthetic_dir, tmp_path, override, message):
    out, _ = teacher_run
    with pytest.raises(UserError, match=message):
        train_student.main(
            [
                "--recipe",
                "kd_smoke",
                "--teacher-cache",
                str(out / "cache"),
                "--output-dir",
                str(tmp_path / "s"),
                *tiny(synthetic_dir, override),
            ]
        )
    assert not (tmp_path / "s" / "state").exists()


def test_one_identity_per_cache_every_field_is_in_the_key_and_the_check():
    """STYLE 16: each field of the CacheSpec changes its key, and is what the one comparison reports, as a typed
    kind; a field not asked for (None) is not compared; the key names distill-run's cache directory."""
    import dataclasses

    from distill.logit_cache import CacheSpec

    base = CacheSpec(teachers=("a" * 64,), transfer="", val_size=0, val_seed=0, data="d" * 64, images=400, views=8,
                     augment='{"translate": 2}', seed=0)  # fmt: skip
    other = {"teachers": ("b" * 64,), "transfer": "f" * 64, "val_size": 40, "val_seed": 1, "data": "e" * 64,
             "images": 300, "views": 4, "augment": '{"translate": 4}', "seed": 1}  # fmt: skip
    assert set(other) == {f.name for f in dataclasses.fields(CacheSpec)}  # every field walked
    assert base.mismatch(base) is None
    for name, value in other.items():
        changed = dataclasses.replace(base, **{name: value})
        assert changed.key != base.key, name
        found = changed.mismatch(base)
        assert found is not None and found.kind == name and found.reason, name
        assert changed.mismatch(dataclasses.replace(base, **{name: None})) is None, name


def test_a_cache_records_its_key_and_students_record_it(teacher_run, synthetic_dir, tmp_path):
    from distill.data import load_data
    from distill.logit_cache import CacheSpec
    from distill.recipe import load_recipe
    from distill.run import _cache_path, expected_spec

    out, _ = teacher_run
    cache = LogitCache.load(out / "cache")
    recipe = load_recipe("kd_smoke", tiny(synthetic_dir))
    spec = CacheSpec.of(list(cache.teacher_weights), load_data(recipe.data)[0], (0, 0), recipe.augment,
                        recipe.cache.views, recipe.cache.seed, None)  # fmt: skip
    assert cache.key == cache.meta["key"] == spec.key == expected_spec(recipe, list(cache.teacher_weights)).key
    train_student.main(["--recipe", "kd_smoke", "--teacher-cache", str(out / "cache"), "--output-dir",
                        str(tmp_path / "s"), *tiny(synthetic_dir)])  # fmt: skip
    assert json.loads((tmp_path / "s" / "run.json").read_text())["teacher_cache_key"] == spec.key
    other = load_recipe("kd_smoke", tiny(synthetic_dir, "augment.translate=1"))
    assert _cache_path(load_recipe("teacher_smoke"), other, tmp_path).name == (
        f"cache-kd_smoke-{expected_spec(other, None, data=False).key[:8]}"
    )


def test_cache_from_other_teacher_weights_or_version_is_refused(teacher_run, synthetic_dir, tmp_path):
    out, _ = teacher_run
    run = tmp_path / "teacher"
    shutil.copytree(out, run)
    cache_logits.main(["--teacher", str(run), *tiny(synthetic_dir)[:2]])
    cache = LogitCache.load(run / "cache")
    assert cache.meta["teachers"][0]["run_dir"] == str(run.resolve())
    # the teacher is retrained (other weights): its old cache is stale
    [other] = train_teacher.main(
        ["--recipe", "teacher_smoke", "--output-dir", str(tmp_path / "t2"), *tiny(synthetic_dir, "seed=1")]
    )
    shutil.copy(other.run_dir / "model.safetensors", run / "model.safetensors")
    with pytest.raises(UserError, match="is stale"):
        LogitCache.load(run / "cache")
    meta = json.loads((out / "cache" / "meta.json").read_text())
    bad = tmp_path / "v0"
    shutil.copytree(out / "cache", bad)
    (bad / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(UserError, match="format version 0"):
        LogitCache.load(bad)
    np.save(bad / "logits.npy", np.zeros((2, 400, 10), np.float16))
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="does not match meta.json"):
        LogitCache.load(bad)


def test_cache_views_zero(teacher_run, synthetic_dir, tmp_path):
    out, _ = teacher_run
    path = cache_logits.main(
        ["--teacher", str(out), "--out", str(tmp_path / "c0"), "cache.views=0", *tiny(synthetic_dir)[:2]]
    )
    cache = LogitCache.load(path)
    logits, views = cache.epoch_arrays(5)
    assert logits.shape == (400, 10) and views is None
    result = train_student.main(
        [
            "--recipe",
            "kd_smoke",
            "--teacher-cache",
            str(path),
            "cache.views=0",
            "--output-dir",
            str(tmp_path / "s0"),
            *tiny(synthetic_dir),
        ]
    )
    assert 0 <= result.test_accuracy <= 1


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("extra", [[], ["train.lookahead=true", "train.ema_decay=0.9"]], ids=["sgd", "lookahead+ema"])
def test_resume_matches_uninterrupted(extra, synthetic_dir, tmp_path, monkeypatch):
    args = ["--recipe", "ce_smoke", *tiny(synthetic_dir, "train.epochs=3", *extra)]
    full = train_student.main([*args, "--output-dir", str(tmp_path / "full")])

    from distill import engine

    real = engine.train_one_epoch

    def dies_in_epoch_3(*a, **k):
        if k["epoch"] == 2:
            raise Interrupt
        return real(*a, **k)

    part = tmp_path / "part"
    monkeypatch.setattr(engine, "train_one_epoch", dies_in_epoch_3)
    with pytest.raises(Interrupt):
        train_student.main([*args, "--output-dir", str(part)])
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert json.loads((part / "state" / "progress.json").read_text())["epoch"] == 2
    assert not (part / "summary.json").exists()
    with pytest.raises(UserError, match="already holds a run"):
        train_student.main([*args, "--output-dir", str(part)])
    resumed = train_student.main([*args, "--output-dir", str(part), "--resume"])
    assert resumed.test_accuracy == full.test_accuracy  # deterministic on CPU
    weights = [(d / "model.safetensors").read_bytes() for d in (part, tmp_path / "full")]
    assert weights[0] == weights[1]  # optimiser (Lookahead's slow weights too) and EMA state restored exactly
    metrics = [json.loads(ln) for ln in (part / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(ln) for ln in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    drop = ("img_per_s", "seconds", "first_step_seconds")
    assert [{k: v for k, v in m.items() if k not in drop} for m in metrics] == [
        {k: v for k, v in m.items() if k not in drop} for m in expected
    ]
    with pytest.raises(UserError, match="already finished"):
        train_student.main([*args, "--output-dir", str(part), "--resume"])
    with pytest.raises(UserError, match="nothing to resume"):
        train_student.main([*args, "--output-dir", str(tmp_path / "none"), "--resume"])


def test_ema_weights_are_evaluated_and_saved(synthetic_dir, tmp_path):
    from safetensors.torch import load_file

    result = train_student.main(
        ["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ema"), *tiny(synthetic_dir, "train.ema_decay=0.9")]
    )
    saved = load_file(str(tmp_path / "ema" / "model.safetensors"))
    for name, value in result.model.state_dict().items():
        assert torch.equal(saved[name], value.cpu())  # the saved weights are the evaluated (EMA) ones
    assert type(result.model).__name__ == "CifarResNet"


def test_ensemble_cache_is_the_mean_of_its_teachers(teacher_run, synthetic_dir, tmp_path):
    out, _ = teacher_run
    other = tmp_path / "teacher_seed1"
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(other), *tiny(synthetic_dir, "seed=1")])
    with pytest.raises(UserError, match="needs --out"):
        cache_logits.main(["--teacher", str(out), "--teacher", str(other)])
    both = cache_logits.main(["--teacher", str(out), "--teacher", str(other), "--out", str(tmp_path / "ensemble")])
    ensemble, single, second = (LogitCache.load(d) for d in (both, out / "cache", other / "cache"))
    expected = np.mean([single.logits.astype(np.float32), second.logits.astype(np.float32)], axis=0)
    np.testing.assert_array_equal(ensemble.logits, expected.astype(np.float16))
    assert all(np.array_equal(ensemble.views[k], single.views[k]) for k in ensemble.views)  # the first's views
    assert [t["run_dir"] for t in ensemble.meta["teachers"]] == [str(out.resolve()), str(other.resolve())]
    shutil.copy(out / "model.safetensors", other / "model.safetensors")  # the second teacher changes
    with pytest.raises(UserError, match="is stale"):
        LogitCache.load(both)


def test_sigterm_mid_epoch_stops_after_it_with_a_checkpoint(synthetic_dir, tmp_path, monkeypatch, capsys):
    import os
    import signal

    from distill import engine
    from distill.errors import cli_main

    real = engine.train_one_epoch

    def signalled_in_epoch_2(*a, **k):
        if k["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, in the middle of the epoch
        return real(*a, **k)

    monkeypatch.setattr(engine, "train_one_epoch", signalled_in_epoch_2)
    run = tmp_path / "run"
    args = ["--recipe", "ce_smoke", "--output-dir", str(run), *tiny(synthetic_dir, "train.epochs=4")]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(lambda: train_student.main([*args, "train.checkpoint_every=100"]))
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert "stopped: SIGTERM received; checkpoint saved after epoch 2 of 4" in capsys.readouterr().err
    assert json.loads((run / "state" / "progress.json").read_text())["epoch"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone with the run


def test_validation_split_end_to_end(synthetic_dir, tmp_path):
    """Teacher, cache and student hold out the same 40 images; epochs are scored on them, the test set once."""
    held = ["data.val_size=40", "data.val_seed=3"]
    [teacher] = train_teacher.main(
        ["--recipe", "teacher_smoke", "--output-dir", str(tmp_path / "t"), *tiny(synthetic_dir, *held)]
    )
    meta = json.loads((tmp_path / "t" / "cache" / "meta.json").read_text())
    assert meta["data"]["num_images"] == 360 and (meta["data"]["val_size"], meta["data"]["val_seed"]) == (40, 3)
    run = tmp_path / "s"
    student = train_student.main(
        ["--recipe", "kd_smoke", "--teacher-cache", str(tmp_path / "t" / "cache"), "--output-dir", str(run),
         *tiny(synthetic_dir, *held)]
    )  # fmt: skip
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(ln["val_acc"] is not None and "test_acc" not in ln for ln in lines)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_accuracy"] == student.test_accuracy and summary["val_images"] == 40
    assert summary["val_accuracy_no_tta"] == lines[-1]["val_acc"]
    info = json.loads((run / "run.json").read_text())["data"]
    assert (info["val_size"], info["val_seed"], info["train_images"]) == (40, 3, 360)


def test_teacher_seeds_share_one_cache_of_mean_logits(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "ens"
    args = ["--recipe", "teacher_smoke", "--seeds", "2", "--output-dir", str(out), *tiny(synthetic_dir, "seed=4")]
    results = train_teacher.main(args)
    assert [r.run_dir.name for r in results] == ["seed4", "seed5"]
    # the ensemble's own accuracy is the last line, and in ensemble.json (its mean logits, with the recipe's TTA)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    saved = json.loads((out / "ensemble.json").read_text())
    assert last.startswith("Ensemble of 2 teachers (mean logits): test accuracy") and "seed4" in last
    assert f"{100 * saved['test_accuracy']:.2f}%" in last and set(saved["members"]) == {"seed4", "seed5"}
    # one process trained both: each checkpoint holds its own model and optimiser only (so each resumes alone)
    assert sorted(p.name for p in (out / "seed5" / "state").glob("model*")) == ["model.safetensors"]
    cache = LogitCache.load(out / "cache")
    assert [t["run_dir"] for t in cache.meta["teachers"]] == [str((out / f"seed{s}").resolve()) for s in (4, 5)]
    # the cache holds the mean of the two teachers' logits on each view
    single = [cache_logits.main(["--teacher", str(out / f"seed{s}"), "--out", str(tmp_path / f"c{s}")]) for s in (4, 5)]
    each = [np.load(c / "logits.npy").astype(np.float32) for c in single]
    np.testing.assert_allclose(np.load(out / "cache" / "logits.npy"), (each[0] + each[1]) / 2, rtol=1e-3, atol=2e-3)
    with pytest.raises(UserError, match="and its cache are complete; nothing to resume"):
        train_teacher.main([*args, "--resume"])
    shutil.rmtree(out / "cache")
    assert train_teacher.main([*args, "--resume"]) == [None, None]  # both finished: reused, only the cache is built
    assert (out / "cache" / "meta.json").is_file()


def test_tensorboard_event_files_hold_every_epoch(synthetic_dir, tmp_path):
    """train.log_with=tensorboard: Accelerate's tracker writes RUN/tb/, which TensorBoard's own reader parses."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb_run"
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(out),
                        *tiny(synthetic_dir, "train.epochs=3", "train.log_with=tensorboard")])  # fmt: skip
    events = EventAccumulator(str(out / "tb")).Reload()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([m["train_loss"] for m in metrics], rel=1e-5)
    assert {"train/acc", "lr", "img_per_s", "test/acc", "final/test_acc"} <= set(events.Tags()["scalars"])
    summary = json.loads((out / "summary.json").read_text())
    assert events.Scalars("final/test_acc")[0].value == pytest.approx(summary["test_accuracy"], rel=1e-6)


def test_tensorboard_missing_is_one_line_before_anything_is_written(synthetic_dir, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(
        UserError, match=r"train.log_with=tensorboard needs TensorBoard.*pip install 'distill\[tensorboard\]'"
    ):
        train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "r"),
                            *tiny(synthetic_dir, "train.log_with=tensorboard")])  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_batch_larger_than_the_training_set_is_warned(synthetic_dir, tmp_path, capsys):
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "big"),
                        *tiny(synthetic_dir, "train.epochs=1", "train.batch_size=1000")])  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: train.batch_size 1000 is larger than the 400 training images: each epoch is one step" in err
    assert json.loads((tmp_path / "big" / "state" / "progress.json").read_text())["step"] == 1
