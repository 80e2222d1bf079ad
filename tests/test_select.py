"""Selective epochs (``train.select_fraction``): which images an epoch keeps, its batches, and a run's record."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from distill.augment import AugmentSpec
from distill.devices import make_accelerator
from distill.engine import EpochData, Hardness, epoch_batches
from distill.errors import UserError
from distill.losses import KDLoss, kl_per_image
from distill.recipe import load_recipe
from tests.conftest import tiny


def recorded(losses: list[float]) -> Hardness:
    hardness = Hardness(len(losses), torch.device("cpu"))
    hardness.record(torch.arange(len(losses)), torch.tensor(losses))
    hardness.sync(make_accelerator(load_recipe("ce_smoke")))
    return hardness


def test_a_selecting_epoch_keeps_the_hardest_and_a_random_share_of_the_rest():
    hardness = recorded([float(i) for i in range(100)])  # image i's loss is i: 99 is the hardest
    subset = hardness.subset(fraction=0.4, random_share=0.25, seed=0, epoch=2)
    assert len(subset) == 40 and torch.equal(subset, subset.sort().values) and len(set(subset.tolist())) == 40
    assert set(range(70, 100)) <= set(subset.tolist())  # the 30 hardest, for certain
    drawn = [i for i in subset.tolist() if i < 70]
    assert len(drawn) == 10  # ... and 10 drawn from the 70 others: not simply the next 10 hardest
    assert drawn != list(range(60, 70))
    assert torch.equal(subset, hardness.subset(0.4, 0.25, seed=0, epoch=2))  # the same on every process
    assert not torch.equal(subset, hardness.subset(0.4, 0.25, seed=0, epoch=3))  # fresh draws each epoch
    assert hardness.subset(0.4, 0.0, 0, 2).tolist() == list(range(60, 100))


def test_an_image_never_trained_on_ranks_first_and_a_record_survives_until_renewed():
    hardness = Hardness(6, torch.device("cpu"))
    accelerator = make_accelerator(load_recipe("ce_smoke"))
    hardness.record(torch.tensor([0, 1, 2, 3]), torch.tensor([5.0, 1.0, 4.0, 2.0]))
    hardness.sync(accelerator)  # images 4 and 5 were not trained on: they rank first
    assert hardness.subset(0.5, 0.0, 0, 1).tolist() == [0, 4, 5]
    hardness.record(torch.tensor([4, 5]), torch.tensor([0.5, 0.25]))
    hardness.sync(accelerator)  # only 4 and 5 renewed; 0..3 keep what they had
    assert hardness.loss.tolist() == [5.0, 1.0, 4.0, 2.0, 0.5, 0.25]
    restored = Hardness(6, torch.device("cpu"))
    restored.load_state_dict(hardness.state_dict())
    assert torch.equal(restored.loss, hardness.loss)
    with pytest.raises(ValueError, match="holds 6 images, not 7"):
        Hardness(7, torch.device("cpu")).load_state_dict(hardness.state_dict())


def test_a_subset_epoch_has_a_full_epochs_steps_and_covers_each_kept_image_once():
    n = 100
    zero = torch.zeros(n, dtype=torch.long)
    data = EpochData(torch.zeros(n, 32, 32, 3, dtype=torch.uint8), torch.arange(n) % 10,
                     {"flip": zero.bool(), "dy": zero, "dx": zero}, None)  # fmt: skip
    accelerator = make_accelerator(load_recipe("ce_smoke"))
    subset = torch.arange(0, n, 3)  # 34 images
    batches = list(epoch_batches(data, AugmentSpec(translate=0), 20, 0, 2, accelerator, subset=subset, steps=5))
    assert len(batches) == 5 and sorted(len(b.index) for b in batches) == [6, 7, 7, 7, 7]
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == subset.tolist()
    assert torch.equal(torch.cat([b.y for b in batches]), torch.cat([b.index for b in batches]) % 10)
    again = list(epoch_batches(data, AugmentSpec(translate=0), 20, 0, 2, accelerator, subset=subset, steps=5))
    assert all(torch.equal(a.index, b.index) for a, b in zip(batches, again))  # seeded, like a full epoch's order


def test_the_loss_says_each_images_hardness():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 10), torch.randn(6, 10), torch.tensor([0, 1, 2, -1, 4, 5])
    plain = KDLoss(alpha=0.0, label_smoothing=0.1)(student, labels)["per_image"]
    expected = F.cross_entropy(student, labels.clamp(min=0), label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(plain, expected * (labels >= 0))  # an unlabelled image has no CE
    distilled = KDLoss(alpha=0.9, temperature=2.0)(student, labels, teacher)["per_image"]
    torch.testing.assert_close(distilled, kl_per_image(student, teacher, 2.0))
    assert not distilled.requires_grad


def test_a_selecting_run_trains_on_its_share_and_checkpoints_the_record(synthetic_dir, tmp_path):
    from distill import train_student

    run = tmp_path / "run"
    overrides = tiny(synthetic_dir, "train.epochs=3", "train.select_fraction=0.5", "train.select_after=1")
    train_student.main(["--recipe", "ce_smoke", "--output-dir", str(run), *overrides])
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["images"] for m in metrics] == [400, 200, 200]  # 400 synthetic images; half after the first epoch
    record = load_file(str(run / "state" / "hardness.safetensors"))["loss"]
    assert record.shape == (400,) and bool(record.isfinite().all())  # every image was trained on in epoch 1


def test_a_share_too_small_for_its_steps_is_refused_before_anything_is_written(synthetic_dir, tmp_path):
    from distill import train_student

    run = tmp_path / "run"
    with pytest.raises(UserError, match="under 2 per process a step: raise it"):
        train_student.main(["--recipe", "ce_smoke", "--output-dir", str(run),
                            *tiny(synthetic_dir, "train.select_fraction=0.01")])  # fmt: skip
    assert not run.exists()


def test_a_runs_images_count_each_selecting_epoch_as_its_share():
    """What distill-run's estimate and the run's own multiply a rate by: 8 epochs, 6 of them on 60%, are 5.6."""
    from distill.engine import image_epochs

    assert image_epochs(8, 0.6, 2) == pytest.approx(5.6)
    assert image_epochs(8) == 8 and image_epochs(8, 1.0, 2) == 8
    assert image_epochs(2, 0.6, 2) == 2 and image_epochs(1, 0.5, 2) == 1  # none selects before select_after
