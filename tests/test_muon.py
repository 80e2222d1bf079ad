"""train.optimizer=muon: PyTorch's Muon on filter banks (as matrices), Nesterov SGD on the rest (airbench94_muon)."""

import copy

import pytest
import timm
import torch

import students  # noqa: F401
import teachers  # noqa: F401
from distill import precision
from distill.errors import UserError
from distill.optim import FilterMuon, StepSchedule, filter_matrix, make_optimizer, newton_schulz
from distill.recipe import load_recipe

MUON = ["train.optimizer=muon", "train.lookahead=false", "train.warmup_epochs=0", "train.lr_min=0"]


def muon_only(p: torch.Tensor, **kwargs) -> FilterMuon:
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, ns_steps=5, normalize=False) | kwargs
    return FilterMuon([dict(params=[p], muon=True)], **settings)


def test_orthogonalised_update_golden_value():
    """One step from 0 with lr 1 and no momentum is minus the quintic Newton-Schulz iteration of the gradient.

    The golden value is that iteration (coefficients 3.4445, -4.7750, 2.0315, 5 steps) in float64; PyTorch runs
    it in bf16, hence the tolerance. It is not U V^T (0.463, 0.871, ...): the iteration only pushes the singular
    values into about (0.5, 1.5), which is what Muon means by orthogonalised.
    """
    p = torch.zeros(2, 3, requires_grad=True)
    p.grad = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    muon_only(p, lr=1.0, momentum=0.0, nesterov=False).step()
    golden = torch.tensor([[0.3296, 0.6579, -0.0039], [-0.0013, 0.3238, 0.9791]])
    torch.testing.assert_close(-p.detach(), golden, atol=3e-2, rtol=0)  # bf16: 8 bits, 5 iterations


def test_fp32_newton_schulz_meets_the_golden_value_closely():
    """The same step with ``ns_precision="fp32"``: the float64 golden value to its four decimals, not bf16's 3e-2."""
    p = torch.zeros(2, 3, requires_grad=True)
    p.grad = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0]])
    muon_only(p, lr=1.0, momentum=0.0, nesterov=False, ns_precision="fp32").step()
    golden = torch.tensor([[0.3296, 0.6579, -0.0039], [-0.0013, 0.3238, 0.9791]])
    torch.testing.assert_close(-p.detach(), golden, atol=1e-4, rtol=0)


@pytest.mark.parametrize("shape", [(24, 40), (40, 24)])  # wide, and tall (iterated on its transpose)
def test_fp32_newton_schulz_is_the_float64_iteration(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    coefficients = (3.4445, -4.7750, 2.0315)
    x = g.double().T if shape[0] > shape[1] else g.double()
    x = x / x.norm()
    for _ in range(5):
        gram = x @ x.T
        x = coefficients[0] * x + (coefficients[1] * gram + coefficients[2] * gram @ gram) @ x
    expected = (x.T if shape[0] > shape[1] else x).float()
    out = newton_schulz(g, coefficients, 5, 1e-7)
    assert out.dtype == torch.float32 and out.shape == g.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_fp32_steps_agree_with_torch_muon_to_bf16_rounding():
    """Momentum, Nesterov, decoupled decay and the LR adjustment are PyTorch's; only the iteration's dtype differs."""
    settings = dict(lr=0.05, weight_decay=0.1, momentum=0.95, nesterov=True, ns_steps=5)
    start = torch.randn(48, 32, generator=torch.Generator().manual_seed(1))  # tall: the LR adjustment is > 1
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    steps(muon_only(ours, normalize=False, ns_precision="fp32", **settings), [ours], 6)
    steps(torch.optim.Muon([theirs], **settings), [theirs], 6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=3e-3)
    assert (ours.detach() - start).abs().max() > 0.05  # and it moved


@pytest.mark.parametrize("ns", ["bf16", "fp32"])
def test_a_closure_runs_with_grad_and_its_loss_comes_back(ns):
    p = torch.randn(8, 6, generator=torch.Generator().manual_seed(7)).requires_grad_()
    start = p.detach().clone()
    opt = muon_only(p, ns_precision=ns)

    def closure():
        opt.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == pytest.approx((start**2).sum().item())
    assert not torch.equal(p.detach(), start)


@pytest.mark.parametrize(
    "device, feature, expected",
    [("cuda", None, "bf16"), ("cpu", "avx512_bf16", "bf16"), ("cpu", "amx_bf16", "bf16"), ("cpu", None, "fp32")],
)
def test_auto_ns_precision_is_fp32_only_where_bf16_is_emulated(monkeypatch, device, feature, expected):
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: feature)
    assert precision.resolve_ns_precision("auto", device) == expected
    assert precision.resolve_ns_precision("bf16", device) == "bf16"  # a forced value stays
    assert precision.resolve_ns_precision("fp32", device) == "fp32"


@pytest.mark.parametrize("feature, expected", [("avx512_bf16", "bf16"), (None, "fp32")])
def test_the_recipe_optimiser_resolves_ns_precision_on_its_device(monkeypatch, feature, expected):
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: feature)
    assert build()[2].ns_precision == expected  # a CPU model
    assert build("train.muon_ns_precision=bf16")[2].ns_precision == "bf16"


def test_update_of_a_wide_matrix_has_singular_values_near_one():
    g = torch.Generator().manual_seed(0)
    p = torch.zeros(64, 576, requires_grad=True)
    p.grad = torch.randn(64, 576, generator=g) @ torch.diag(torch.logspace(-3, 0, 576))  # badly conditioned
    muon_only(p, lr=1.0, momentum=0.0, nesterov=False).step()
    s = torch.linalg.svdvals(p.detach().double())
    assert 0.5 < s.min() and s.max() < 1.3


def steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], n: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(memory_format=_format(p))
        opt.step()


def _format(p: torch.Tensor) -> torch.memory_format:
    cl = p.ndim == 4 and not p.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


def test_agrees_with_torch_muon_on_a_matrix():
    settings = dict(lr=0.05, weight_decay=0.1, momentum=0.95, nesterov=True, ns_steps=5)
    start = torch.randn(32, 48, generator=torch.Generator().manual_seed(1))
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    steps(muon_only(ours, normalize=False, **settings), [ours], 6)
    steps(torch.optim.Muon([theirs], **settings), [theirs], 6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("channels_last", [False, True])
def test_a_filter_bank_steps_as_its_out_by_in_k_k_matrix(channels_last):
    """A (out, in, k, k) bank takes the step torch.optim.Muon gives its (out, in*k*k) matrix, in either layout."""
    start = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(2))
    bank = start.clone().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    bank.requires_grad_()
    matrix = start.clone().view(16, -1).requires_grad_()
    opt = muon_only(bank, lr=0.05, momentum=0.9)
    ref = torch.optim.Muon([matrix], lr=0.05, momentum=0.9, nesterov=True, ns_steps=5, weight_decay=0.0)
    g = torch.Generator().manual_seed(3)
    for _ in range(4):
        grad = torch.randn(16, 8, 3, 3, generator=g)
        bank.grad = grad.clone().to(memory_format=_format(bank))
        matrix.grad = grad.clone().view(16, -1)
        opt.step()
        ref.step()
    assert bank.is_contiguous(memory_format=torch.channels_last) == channels_last  # stepped in place
    # bf16 Newton-Schulz sums the columns in the layout's order: equal to bf16 rounding, not bit for bit
    torch.testing.assert_close(bank.detach().reshape(16, -1), matrix.detach(), rtol=0, atol=3e-3)
    assert (bank.detach() - start).abs().max() > 0.05  # and it moved


def test_filter_matrix_is_a_view_of_the_storage():
    for fmt in (torch.contiguous_format, torch.channels_last):
        bank = torch.zeros(4, 3, 3, 3).to(memory_format=fmt)
        filter_matrix(bank).add_(1.0)
        assert bank.eq(1.0).all()
    with pytest.raises(ValueError, match="contiguous or channels-last"):
        filter_matrix(torch.zeros(3, 3, 4, 4).transpose(0, 2))


def test_normalize_scales_each_bank_to_norm_sqrt_out_before_its_step():
    bank = (5 * torch.randn(16, 8, 3, 3)).requires_grad_()
    bank.grad = torch.randn(16, 8, 3, 3)
    muon_only(bank, lr=1e-6, normalize=True).step()
    assert bank.norm().item() == pytest.approx(4.0, rel=1e-4)  # sqrt(16)


def test_the_other_groups_are_torch_sgd():
    start = torch.randn(10, generator=torch.Generator().manual_seed(4))
    ours, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    group = dict(params=[ours], muon=False, lr=0.3, momentum=0.85, nesterov=True, weight_decay=1e-3)
    opt = FilterMuon([group], lr=0.24, momentum=0.6, nesterov=True, ns_steps=3, normalize=True)
    steps(opt, [ours], 5)
    steps(torch.optim.SGD([theirs], lr=0.3, momentum=0.85, nesterov=True, weight_decay=1e-3), [theirs], 5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def build(*overrides: str, name: str = "kd_fast94"):
    recipe = load_recipe(name, [*MUON, *overrides])
    torch.manual_seed(0)
    model = timm.create_model(recipe.model.name, num_classes=10, **recipe.model.kwargs)
    return recipe, model.to(memory_format=torch.channels_last), make_optimizer(model, recipe.train)


@pytest.mark.parametrize("name", ["kd_fast94", "teacher_94"])
def test_groups_split_filters_from_the_rest(name):
    """Every trainable parameter in exactly one group: the 4-D conv weights with Muon, the rest with SGD."""
    recipe, model, opt = build(name=name)
    muon = [p for g in opt.param_groups if g["muon"] for p in g["params"]]
    sgd = [p for g in opt.param_groups if not g["muon"] for p in g["params"]]
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad]
    assert {id(p) for p in muon} == {id(p) for p in convs} and len(muon) == len(convs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(map(id, muon + sgd)) == sorted(map(id, trainable))
    assert all(p.ndim < 4 for p in sgd)
    t = recipe.train
    assert opt.param_groups[0]["lr"] == t.lr and opt.param_groups[-1]["lr"] == pytest.approx(t.muon_lr)


def test_schedule_moves_muon_and_sgd_alike():
    recipe, _, opt = build()  # no warm-up, linear to 0
    schedule = StepSchedule(recipe.train, opt, 100, 10)
    schedule.step_update(50)
    t = recipe.train
    assert opt.param_groups[0]["lr"] == pytest.approx(t.lr / 2)
    assert opt.param_groups[-1]["lr"] == pytest.approx(t.muon_lr / 2)
    assert opt.param_groups[-2]["lr"] == pytest.approx(t.lr * t.norm_bias_lr_scale / 2)  # BatchNorm biases


def train_tiny(opt, model, n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    for _ in range(n):
        x = torch.randn(16, 3, 32, 32, generator=g).to(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (16,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("ns", ["bf16", "fp32"])
def test_state_dict_resumes_the_same_steps(ns):
    """A checkpoint of the optimiser (momentum of both kinds) resumes to the weights of an unbroken run."""
    _, model, opt = build("model.name=cifar_air_tiny", f"train.muon_ns_precision={ns}")
    train_tiny(opt, model, 3)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())  # it holds references
    unbroken = train_tiny(opt, model, 2)
    _, model2, opt2 = build("model.name=cifar_air_tiny", f"train.muon_ns_precision={ns}")
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    for a, b in zip(train_tiny(opt2, model2, 2), unbroken, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.optimizer=lion", "train.optimizer must be"),
        ("train.muon_momentum=1", "muon_momentum in"),
        ("train.muon_lr=0", "muon_lr must be > 0"),
        ("train.muon_ns_steps=0", "muon_ns_steps"),
        ("train.muon_ns_precision=fp16", "muon_ns_precision must be one of auto, bf16, fp32"),
    ],
)
def test_bad_muon_settings_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        load_recipe("kd_fast94", ["train.optimizer=muon", override])
