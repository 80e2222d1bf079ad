"""Issue 16's switches: a transfer set of unlabelled images, a final fit on all labels, test-time BatchNorm."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from distill import cache_logits, evaluate, export, report, train_student, train_teacher
from distill.augment import AugmentSpec
from distill.data import UNLABELED, load_cifar10, load_data, load_unlabeled, shared_images
from distill.engine import batchnorm_from
from distill.errors import UserError
from distill.logit_cache import LogitCache
from distill.losses import KDLoss
from distill.recipe import load_recipe
from tests.conftest import synthetic_split, tiny


def test_unlabelled_images_get_no_cross_entropy():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 10), torch.randn(6, 10)
    labels = torch.tensor([3, 1, UNLABELED, 4, UNLABELED, 0])
    kd = KDLoss(alpha=0.5, temperature=4.0)
    out = kd(student, labels, teacher)
    labelled = labels >= 0
    expected_ce = torch.nn.functional.cross_entropy(student[labelled], labels[labelled])
    torch.testing.assert_close(out["ce"], expected_ce)
    full = KDLoss(alpha=1.0, temperature=4.0)(student, labels, teacher)["kd"]  # the KD term covers every image
    torch.testing.assert_close(out["kd"], full)
    torch.testing.assert_close(out["loss"], 0.5 * out["kd"] + 0.5 * expected_ce)
    # every image labelled: exactly the plain mean
    plain = kd(student, labels.clamp(min=0), teacher)["ce"]
    torch.testing.assert_close(plain, torch.nn.functional.cross_entropy(student, labels.clamp(min=0)))
    # none labelled: no CE, no NaN
    none = kd(student, torch.full((6,), UNLABELED), teacher)
    assert none["ce"].item() == 0.0 and torch.isfinite(none["loss"])


def test_a_mixed_image_weighs_only_its_labelled_parts():
    student = torch.randn(3, 10)
    labels = torch.tensor([2, UNLABELED, 5])
    partners = torch.tensor([UNLABELED, 7, 1])
    lam = torch.tensor([0.75, 0.4, 0.6])
    out = KDLoss(alpha=0.0)(student, labels, None, partners, lam)
    ce = lambda i, y: torch.nn.functional.cross_entropy(student[i : i + 1], torch.tensor([y]))  # noqa: E731
    total = 0.75 * ce(0, 2) + 0.6 * ce(1, 7) + 0.6 * ce(2, 5) + 0.4 * ce(2, 1)
    torch.testing.assert_close(out["ce"], total / (0.75 + 0.6 + 1.0))


def test_load_unlabeled_reads_npy_and_test_pickles(tmp_path):
    a, b = synthetic_split(30, 5).images, synthetic_split(20, 6).images
    np.save(tmp_path / "a.npy", a)
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({b"data": b, b"ids": list(range(20))}))
    pool = load_unlabeled([str(tmp_path / "a.npy"), str(tmp_path / "b.pkl")])
    assert np.array_equal(pool.images, np.concatenate([a, b])) and (pool.labels == UNLABELED).all()
    assert shared_images(pool.images, a[5:9]) == 4 and shared_images(pool.images[:30], b) == 0


def test_duplicate_unlabelled_images_are_dropped_and_counted(tmp_path, capsys):
    a = synthetic_split(30, 5).images
    np.save(tmp_path / "a.npy", np.concatenate([a, a[:4]]))  # 4 repeated within the file
    pool = load_unlabeled([str(tmp_path / "a.npy"), str(tmp_path / "a.npy")], say=True)  # and the file given twice
    assert np.array_equal(pool.images, a)  # the first of each kept, in order
    assert "38 of the 68 unlabelled images" in capsys.readouterr().err
    assert len(load_unlabeled([str(tmp_path / "a.npy")])) == 30 and capsys.readouterr().err == ""  # say=False: quiet


@pytest.fixture(scope="module")
def teacher(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "teacher"
    train_teacher.main(["--recipe", "teacher_smoke", "--output-dir", str(out), *tiny(synthetic_dir)])
    return out


@pytest.fixture(scope="module")
def transfer(teacher, synthetic_dir, tmp_path_factory):
    """60 unlabelled images (the synthetic test set's first 60), and the teacher's cache with them."""
    root = tmp_path_factory.mktemp("transfer_set")
    _, test = load_cifar10(synthetic_dir, download=False)
    np.save(root / "unlabeled.npy", test.images[:60])
    cache = root / "cache"
    cache_logits.main(["--teacher", str(teacher), "--out", str(cache), "--unlabeled", str(root / "unlabeled.npy"),
                       *tiny(synthetic_dir)])  # fmt: skip
    return root / "unlabeled.npy", cache


def test_the_cache_holds_the_transfer_set_on_its_own_views(teacher, transfer, synthetic_dir):
    files, cache_dir = transfer
    cache = LogitCache.load(cache_dir)
    assert cache.meta["data"]["num_images"] == 400
    assert cache.meta["unlabeled"]["num_images"] == 60 and cache.meta["unlabeled"]["files"] == [str(files.resolve())]
    assert cache.logits.shape == (2, 460, 10) and all(v.shape == (2, 460) for v in cache.views.values())
    # the transfer set's logits are the teacher's on those images' views (view set 0, un-mixed spec)
    from distill.augment import apply_views
    from distill.runs import load_run

    recipe, model = load_run(teacher)
    images = torch.from_numpy(np.concatenate([load_data(recipe.data)[0].images, np.load(files)]))
    view = {k: torch.from_numpy(np.array(v[0])) for k, v in cache.views.items()}
    index = torch.arange(400, 460)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fresh = model(apply_views(images, view, index, AugmentSpec(**cache.meta["augment"]))).float().half()
    torch.testing.assert_close(torch.from_numpy(np.array(cache.logits[0, 400:])), fresh, atol=0.05, rtol=0.02)


def test_a_student_distils_on_the_transfer_set(transfer, synthetic_dir, tmp_path, capsys):
    files, cache = transfer
    out = tmp_path / "student"
    argv = ["--recipe", "kd_smoke", "--teacher-cache", str(cache), "--unlabeled", str(files), "--output-dir", str(out)]
    result = train_student.main([*argv, *tiny(synthetic_dir, "train.batch_size=46")])
    printed = capsys.readouterr().out
    assert "+ 60 unlabelled" in " ".join(printed.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unlabeled_images"] == 60 and summary["train_images"] == 400
    assert summary["transfer_set"] == [str(files.resolve())]
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["unlabeled_images"] == 60 and run["data"]["unlabeled_fingerprint"]
    assert load_recipe(out / "recipe.yaml").kd.unlabeled == [str(files)]
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= ln["train_acc"] <= 1 for ln in lines) and result.test_accuracy is not None
    # the epoch counts the combined set: 460 images in batches of 46 is 10 steps an epoch
    assert json.loads((out / "state" / "progress.json").read_text())["step"] == 2 * 10


def test_training_images_in_the_transfer_set_are_warned_about(teacher, synthetic_dir, tmp_path, capsys):
    train = load_data(load_recipe("teacher_smoke", tiny(synthetic_dir)).data)[0]
    np.save(tmp_path / "copy.npy", train.images[:50])
    cache_logits.main(["--teacher", str(teacher), "--out", str(tmp_path / "c"), "--unlabeled", str(tmp_path / "copy.npy"),
                       *tiny(synthetic_dir)])  # fmt: skip
    err = capsys.readouterr().err
    assert "warning: 50 of the 50 unlabelled images" in err and "are training images" in err


@pytest.fixture(scope="module")
def final_fit(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("final_fit") / "ce"
    overrides = tiny(synthetic_dir, "data.train_on_test=true", "data.val_size=60")
    result = train_student.main(["--recipe", "ce_smoke", "--output-dir", str(out), *overrides])
    return out, result


def test_train_on_test_measures_the_held_out_split(final_fit, synthetic_dir):
    out, result = final_fit
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] is None and result.test_accuracy is None
    assert summary["trained_on_test"] and 0 <= summary["val_accuracy"] <= 1
    assert summary["train_images"] == 400 + 200 - 60  # the test images joined, 60 held out of the whole
    with pytest.raises(UserError, match="inflated"):
        evaluate.evaluate_run(out)


def test_train_on_test_says_so_in_its_last_lines_and_the_report(synthetic_dir, tmp_path, capsys, final_fit):
    overrides = tiny(synthetic_dir, "data.train_on_test=true", "data.val_size=60", "train.epochs=1")
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "ce"), *overrides])
    tail = capsys.readouterr().out.strip().splitlines()[-3:]
    assert tail[0].startswith("Final validation accuracy:") and "test split was trained on" in tail[1]
    assert not any(line.startswith("Final test accuracy") for line in tail)
    text = report.make_report([final_fit[0]], tmp_path / "report", str(synthetic_dir)).read_text()
    assert "none: trained on test" in text and "no test accuracy" in text


def test_bn_statistics_from_the_images_leave_the_model_alone():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten()).eval()
    images = torch.from_numpy(synthetic_split(300, 2).images)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = batchnorm_from(model, images, batch_size=100)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the original is untouched
    from distill.augment import normalize

    with torch.no_grad():
        conv = adapted[0](normalize(images, channels_last=False))
    torch.testing.assert_close(adapted[1].running_mean, conv.mean((0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert not adapted.training and adapted[1].num_batches_tracked.item() == 3
    with pytest.raises(UserError, match="at least 256 images"):
        batchnorm_from(model, images[:100])


def test_export_with_test_bn_statistics(teacher, synthetic_dir, tmp_path):
    _, test = load_cifar10(synthetic_dir, download=False)
    split = synthetic_split(300, 9)
    pkl = tmp_path / "test.pkl"
    pkl.write_bytes(pickle.dumps({b"data": split.images, b"ids": np.arange(300)}))
    weights = (teacher / "model.safetensors").read_bytes()
    plain = export.export(teacher, pkl, tmp_path / "plain.csv")
    adapted = export.export(teacher, pkl, tmp_path / "bn.csv", bn_stats="test")
    assert plain["rows"] == adapted["rows"] == 300
    assert (teacher / "model.safetensors").read_bytes() == weights  # the run's weights stay as they were
    assert load_file(str(teacher / "model.safetensors"))


@pytest.mark.parametrize("loss", ["dkd", "dist", "kl_std"])
def test_every_kd_loss_trains_from_the_cache_with_a_transfer_set(loss, transfer, synthetic_dir, tmp_path):
    """kd.loss reaches the loop: the logged KD term is the chosen loss's on the same cached logits."""
    files, cache = transfer
    out = tmp_path / loss
    argv = ["--recipe", "kd_smoke", "--teacher-cache", str(cache), "--unlabeled", str(files), "--output-dir", str(out)]
    result = train_student.main([*argv, *tiny(synthetic_dir, "train.batch_size=46", f"kd.loss={loss}")])
    assert result.test_accuracy is not None and load_recipe(out / "recipe.yaml").kd.loss == loss
    lines = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(ln["train_kd"] > 0 and np.isfinite(ln["train_loss"]) for ln in lines)
