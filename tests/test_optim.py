"""The optimiser's parameter groups and the per-update schedule (LR and lookahead alpha)."""

import pytest
import timm
import torch

import teachers  # noqa: F401
from distill.optim import StepSchedule, make_optimizer, param_groups
from distill.recipe import load_recipe


def test_default_groups_decay_weights_only():
    model = timm.create_model("cifar_resnet_tiny", num_classes=10)
    weights, others, norm_biases = param_groups(model, 5e-4, filter_bias_and_bn=True, norm_bias_lr_scale=1.0)
    assert weights["weight_decay"] == 5e-4 and all(p.ndim > 1 for p in weights["params"])
    assert others["weight_decay"] == 0 and norm_biases["weight_decay"] == 0 and norm_biases["lr_scale"] == 1.0
    n = sum(len(g["params"]) for g in (weights, others, norm_biases))
    assert n == len([p for p in model.parameters() if p.requires_grad])


def test_airbench_groups_decay_everything_at_one_rate_per_step():
    """airbench: BN biases learn 64x faster, and decay at wd / 64 so that LR x decay is the same for all."""
    model = timm.create_model("cifar_air_tiny", num_classes=10)
    weights, others, norm_biases = param_groups(model, 1e-3, filter_bias_and_bn=False, norm_bias_lr_scale=64.0)
    assert others["weight_decay"] == 1e-3 and norm_biases["weight_decay"] == pytest.approx(1e-3 / 64)
    assert norm_biases["lr_scale"] == 64.0
    bn_biases = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert {id(p) for p in norm_biases["params"]} == bn_biases  # frozen BN weights are in no group
    assert not any(m.weight.requires_grad for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def schedule_for(recipe_name: str, *overrides: str, steps_per_epoch: int = 10):
    recipe = load_recipe(recipe_name, list(overrides))
    model = timm.create_model(recipe.model.name, num_classes=10, **recipe.model.kwargs)
    optimizer = make_optimizer(model, recipe.train)
    total = steps_per_epoch * recipe.train.epochs
    return recipe.train, optimizer, StepSchedule(recipe.train, optimizer, total, steps_per_epoch), total


def lrs_after(schedule, optimizer, step: int) -> list[float]:
    schedule.step_update(step)
    return [g["lr"] for g in optimizer.param_groups]


def test_warmup_peak_and_final_lr():
    t, opt, schedule, total = schedule_for("teacher_94")  # linear: 0.2 x lr -> lr over 2.3 epochs -> lr_min
    warmup = round(2.3 * 10)
    assert lrs_after(schedule, opt, 0)[0] == pytest.approx(0.2 * t.lr)
    assert lrs_after(schedule, opt, warmup)[0] == pytest.approx(t.lr)
    assert lrs_after(schedule, opt, total)[0] == pytest.approx(t.lr_min)
    middle = warmup + (total - warmup) // 2
    assert lrs_after(schedule, opt, middle)[0] == pytest.approx((t.lr + t.lr_min) / 2, rel=0.02)
    assert lrs_after(schedule, opt, middle)[-1] == pytest.approx(64 * lrs_after(schedule, opt, middle)[0])  # BN biases


def test_cosine_schedule_ends_at_lr_min():
    t, opt, schedule, total = schedule_for("kd_t4", "train.epochs=4", "train.lr_min=0.001")
    assert lrs_after(schedule, opt, round(t.warmup_epochs * 10))[0] == pytest.approx(t.lr)
    assert lrs_after(schedule, opt, total)[0] == pytest.approx(0.001)


def test_schedule_after_resume_is_the_uninterrupted_one():
    """A resumed run builds a new schedule and sets it to the checkpoint's step: the same LR as if never stopped."""
    _, opt, schedule, total = schedule_for("teacher_94")
    walked = [lrs_after(schedule, opt, s) for s in range(total + 1)]
    for step in (0, 7, 23, 40, total):
        _, opt2, fresh, _ = schedule_for("teacher_94")
        assert lrs_after(fresh, opt2, step) == walked[step]


def test_lookahead_alpha_ramps_to_its_final_value():
    t, opt, schedule, total = schedule_for("teacher_94")
    assert schedule.lookahead_alpha(0) == 1.0  # no averaging at the start
    assert schedule.lookahead_alpha(total) == pytest.approx(t.lookahead_alpha)
    assert schedule.lookahead_alpha(total // 2) == pytest.approx(1 - (1 - t.lookahead_alpha) / 8)  # (1/2)^3
    schedule.step_update(total)
    assert all(
        g["lookahead_alpha"] == pytest.approx(t.lookahead_alpha) and g["lookahead_k"] == 5 for g in opt.param_groups
    )


def test_loss_scale_is_the_optimiser_at_that_lr_and_decay():
    """kd.loss_scale = 1/4 trains the same weights as LR / 4 and decay x 4 (what BENCHMARKS measured for T = 4
    under airbench's optimiser): SGD's decay is coupled, and momentum, Nesterov and lookahead are linear."""
    from distill.trainer import make_criterion

    def train(*overrides: str) -> list[torch.Tensor]:
        recipe = load_recipe("kd_fast94", ["model.name=cifar_air_tiny", "kd.temperature=4", *overrides])
        torch.manual_seed(0)
        model = timm.create_model(recipe.model.name, num_classes=10, **recipe.model.kwargs)
        optimizer = make_optimizer(model, recipe.train)
        schedule = StepSchedule(recipe.train, optimizer, 12, 4)
        criterion = make_criterion(recipe, distils=True)
        data = torch.Generator().manual_seed(1)
        for step in range(12):  # past two lookahead syncs (k = 5)
            x, teacher = torch.randn(8, 3, 32, 32, generator=data), 3 * torch.randn(8, 10, generator=data)
            y = torch.randint(0, 10, (8,), generator=data)
            loss = criterion(model(x), y, teacher)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step_update(step + 1)
        return [p.detach().clone() for p in model.parameters()]

    t = load_recipe("kd_fast94").train
    scaled = train("kd.loss_scale=0.25")
    by_optimiser = train(
        f"train.lr={t.lr / 4}", f"train.lr_min={t.lr_min / 4}", f"train.weight_decay={t.weight_decay * 4}"
    )
    unscaled = train()
    for a, b in zip(scaled, by_optimiser, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert max((a - b).abs().max().item() for a, b in zip(scaled, unscaled, strict=True)) > 1e-3  # and it differs
