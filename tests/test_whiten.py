"""``train.whiten_bias_epochs``: the whitening stem's bias trains for N epochs, then is held (airbench's schedule)."""

from __future__ import annotations

import pytest
import torch

from distill import engine, trainer
from distill.devices import make_accelerator
from distill.models import create_model, train_whitening_bias
from distill.recipe import load_recipe
from tests.conftest import tiny


def test_a_held_bias_leaves_nothing_before_the_first_trainable_conv_to_differentiate():
    model = create_model("cifar_air_tiny").train()
    seen = {}
    model.stem.register_forward_hook(lambda m, i, out: seen.update(needs_grad=out.requires_grad))
    x = torch.randn(4, 3, 32, 32)
    model(x).sum().backward()
    assert seen["needs_grad"] and model.whiten.conv.bias.grad is not None
    model.zero_grad(set_to_none=True)
    assert train_whitening_bias(model, trains=False) == 1
    model(x).sum().backward()
    assert not seen["needs_grad"]  # so the first trainable conv computes no input gradient
    assert model.whiten.conv.bias.grad is None and all(
        p.grad is not None for p in model.parameters() if p.requires_grad
    )
    assert train_whitening_bias(create_model("cifar_resnet_tiny"), trains=False) == 0  # no stem: nothing to hold


@pytest.mark.parametrize("held_after", [0, 1])
def test_the_bias_moves_in_its_epochs_and_not_after(synthetic_dir, tmp_path, held_after):
    recipe = load_recipe("teacher_smoke", [*tiny(synthetic_dir, "train.epochs=3"), "model.name=cifar_air_tiny",
                                           f"train.whiten_bias_epochs={held_after}"])  # fmt: skip
    run = trainer._setup(recipe, "teacher", tmp_path / "run", make_accelerator(recipe), False, None)
    try:
        bias = run.model.whiten.conv.bias
        snapshots = [bias.detach().clone()]
        with engine.make_progress(run.accelerator) as progress:
            for epoch in range(3):
                trainer.train_epoch(run, epoch, progress)
                snapshots.append(bias.detach().clone())
    finally:
        run.lock.release()
    moved = [not torch.equal(a, b) for a, b in zip(snapshots, snapshots[1:])]
    assert moved == ([True, True, True] if held_after == 0 else [True, False, False])
