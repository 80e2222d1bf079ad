import pytest
import timm
import torch

import students  # noqa: F401
import teachers  # noqa: F401
from distill.errors import UserError
from distill.models import PARAM_CAP, count_flops, count_trainable, create_model
from students import STUDENTS, CifarResNet, ResidualBlock

TEACHERS = ["cifar_resnet_t", "cifar_resnet_t_wide", "cifar_resnet_t_tiny", "cifar_air94", "cifar_air95", "cifar_air96"]


def test_registry_holds_every_model():
    assert set(STUDENTS + tuple(TEACHERS)) <= set(timm.list_models("cifar_*"))


@pytest.mark.parametrize("name", timm.list_models("cifar_*"))
def test_forward_backward(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", STUDENTS)
def test_students_are_residual_networks_under_the_cap(name):
    model = timm.create_model(name, num_classes=10)
    assert count_trainable(model) <= PARAM_CAP
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad]
    in_blocks = {id(c) for b in model.modules() if isinstance(b, ResidualBlock) for c in b.modules()}
    assert len([c for c in convs if id(c) not in in_blocks]) == 1  # the stem; every other conv sits in a block


def test_default_student_and_teacher_sizes():
    assert 4_000_000 <= count_trainable(timm.create_model("cifar_resnet_s", num_classes=10)) <= 5_000_000
    assert count_trainable(timm.create_model("cifar_resnet_t", num_classes=10)) >= 10_000_000


def test_over_cap_student_raises_with_count():
    with pytest.raises(UserError, match=r"5,205,066 trainable parameters, over the 5,000,000 cap"):
        create_model("cifar_resnet_s", {"widths": [64, 128, 256, 256]}, student=True)
    assert count_trainable(create_model("cifar_resnet_t", student=False)) > PARAM_CAP  # teachers: no cap
    with pytest.raises(UserError, match="bad model.kwargs for 'cifar_air96'"):
        create_model("cifar_air96", {"convs": 4})


def test_block_is_the_assignments():
    block = ResidualBlock(8, 16, stride=2)
    assert [type(m) for m in (block.conv1, block.bn1, block.conv2, block.bn2)] == [
        torch.nn.Conv2d,
        torch.nn.BatchNorm2d,
        torch.nn.Conv2d,
        torch.nn.BatchNorm2d,
    ]
    conv, bn = block.shortcut
    assert conv.kernel_size == (1, 1) and isinstance(bn, torch.nn.BatchNorm2d)
    assert isinstance(ResidualBlock(16, 16).shortcut, torch.nn.Identity)
    # ReLU(S(x) + F(x)), checked numerically in eval mode
    block.eval()
    x = torch.randn(2, 8, 8, 8)
    f = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(block.shortcut(x) + f))


def test_model_is_a_stack_of_blocks():
    model = CifarResNet(widths=(8, 16), blocks=(2, 1))
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3


def test_patch_whitening_whitens_the_training_patches():
    from distill.augment import normalize
    from students.resnet import PatchWhitening
    from tests.conftest import synthetic_split

    x = normalize(torch.from_numpy(synthetic_split(300, 0).images), channels_last=False)
    layer = PatchWhitening(3, kernel_size=2, eps=1e-6)
    layer.init_from_data(x)
    out = layer(x)[:, :12]  # the first half; the second is its negative
    assert out.shape == (300, 12, 31, 31)
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    torch.testing.assert_close(torch.cov(flat.T), torch.eye(12, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(layer(x)[:, 12:], -layer(x)[:, :12])


@pytest.mark.parametrize("name,kwargs", [("cifar_resnet_lite", {"whiten": True}), ("cifar_air_tiny", {})])
def test_whiten_eps_reaches_the_stem(name, kwargs):
    assert create_model(name, kwargs, student=name.startswith("cifar_resnet")).whiten.eps == 5e-4  # airbench's
    assert create_model(name, {**kwargs, "whiten_eps": 0.05}).whiten.eps == 0.05


def test_whitening_stem_is_frozen_and_set_by_the_trainer(synthetic_dir, tmp_path):
    from distill import train_student
    from tests.conftest import tiny

    plain = timm.create_model("cifar_resnet_tiny", num_classes=10)
    model = timm.create_model("cifar_resnet_tiny", num_classes=10, whiten=True)
    assert not model.whiten.conv.weight.requires_grad and model.whiten.conv.bias.requires_grad
    assert count_trainable(model) == count_trainable(plain) + 24 + 24 * 9 * 8 - 3 * 9 * 8  # bias; wider stem conv
    result = train_student.main(
        ["--recipe", "ce_smoke", "--output-dir", str(tmp_path / "w"), *tiny(synthetic_dir, "model.kwargs.whiten=true")]
    )
    weight = result.model.whiten.conv.weight
    assert weight.abs().sum() > 0 and not weight.requires_grad  # set from the data, then left alone
    assert result.test_accuracy > 0.3


def test_count_flops_counts_convs_and_the_head_by_hand():
    model = CifarResNet(widths=(8,), blocks=(1,), stem_width=8)
    stem, conv, head = 8 * 3 * 9 * 32 * 32, 8 * 8 * 9 * 32 * 32, 8 * 10  # multiply-adds per image
    flops = count_flops(model)
    assert flops["forward"] == 2 * (stem + 2 * conv + head)
    # backward: weight gradients everywhere, input gradients everywhere but the stem (the image needs none)
    assert flops["train_step"] == flops["forward"] + 2 * (stem + 2 * 2 * conv + 2 * head)
    model.stem[0].weight.requires_grad_(False)  # a frozen layer gets no weight gradient
    assert count_flops(model)["train_step"] == flops["train_step"] - 2 * stem


def test_pool_downsampling_keeps_blocks_at_stride_one():
    model = timm.create_model("cifar_resnet_lite", num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
    assert all(b.conv1.stride == (1, 1) for b in blocks)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 3
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 256, 4, 4)
    with pytest.raises(ValueError, match="downsample 'avg' is not one of"):
        CifarResNet(widths=(8,), blocks=(1,), downsample="avg")


@pytest.mark.parametrize(
    "name, params", [("cifar_air94", 1_971_352), ("cifar_air95", 4_604_440), ("cifar_air96", 9_915_416)]
)
def test_airnet_family_matches_airbench(name, params):
    """airbench's nets: the published sizes, frozen whitening and BN weights, Dirac-initialised convs."""
    from teachers.airnet import AirNet, ConvGroup

    model = timm.create_model(name, num_classes=10)
    assert isinstance(model, AirNet) and count_trainable(model) == params
    assert not model.whiten.conv.weight.requires_grad
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    group = next(m for m in model.modules() if isinstance(m, ConvGroup))
    w = group.convs[0].weight  # out == in: starts as the identity
    torch.testing.assert_close(w[:, :, 1, 1], torch.eye(w.shape[0]))
    assert model.forward_features(torch.randn(2, 3, 32, 32)).shape[-2:] == (3, 3)
    assert group.residual == (name == "cifar_air96")


def test_airnet_residual_group_adds_its_input():
    from teachers.airnet import ConvGroup

    group = ConvGroup(4, 8, convs=3).eval()
    torch.nn.init.zeros_(group.convs[1].weight)  # the residual branch now outputs BN(0) = bias = 0
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(group(x), group.act(group.act(group.norm1(group.pool(group.conv1(x))))))


def test_block_activation_inside_f_only():
    """``act`` is F's inner activation; the block's outer one stays ReLU, as the assignment has it."""
    block = ResidualBlock(8, 16, act="gelu").eval()
    assert isinstance(block.act, torch.nn.GELU) and isinstance(block.relu, torch.nn.ReLU)
    x = torch.randn(2, 8, 8, 8)
    f = block.bn2(block.conv2(torch.nn.functional.gelu(block.bn1(block.conv1(x)))))
    torch.testing.assert_close(block(x), torch.relu(block.shortcut(x) + f))
    model = CifarResNet(widths=(8, 16), blocks=(1, 1), act="gelu", whiten=True)
    assert [type(m) for m in model.stem if not isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d)][:2] == [
        type(model.whiten),
        torch.nn.GELU,
    ]


def test_frozen_norm_weights_leave_only_biases_learning():
    learn = CifarResNet(widths=(8, 16), blocks=(1, 1))
    frozen = CifarResNet(widths=(8, 16), blocks=(1, 1), norm_weight=False, init="dirac")
    norms = [m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not n.weight.requires_grad and n.bias.requires_grad for n in norms)
    assert all(float(n.weight.min()) == float(n.weight.max()) == 1.0 for n in norms)
    assert count_trainable(learn) - count_trainable(frozen) == sum(n.num_features for n in norms)
    with pytest.raises(ValueError, match="init 'zero_last' starts each block's last BatchNorm weight at 0"):
        CifarResNet(widths=(8,), blocks=(1,), norm_weight=False)
    bn = CifarResNet(widths=(8,), blocks=(1,), bn_momentum=0.4, bn_eps=1e-12).stem[1]
    assert (bn.momentum, bn.eps) == (0.4, 1e-12)


@torch.no_grad()
def test_init_choices_set_the_weights_they_name():
    zero = CifarResNet(widths=(8, 16), blocks=(1, 1))
    assert all(float(b.bn2.weight.abs().max()) == 0.0 for b in zero.modules() if isinstance(b, ResidualBlock))
    kaiming = CifarResNet(widths=(8, 16), blocks=(1, 1), init="kaiming")
    assert all(float(b.bn2.weight.min()) == 1.0 for b in kaiming.modules() if isinstance(b, ResidualBlock))
    dirac = CifarResNet(widths=(8, 16), blocks=(1, 1), init="dirac")
    same, wider = dirac.stages[0][0], dirac.stages[1][0]  # 8 -> 8, then 8 -> 16 with a 1x1 shortcut
    torch.testing.assert_close(same.conv2.weight[:, :, 1, 1], torch.eye(8))  # out == in: the identity
    assert float(same.conv2.weight.sum()) == 8.0  # and nothing off the centre
    torch.testing.assert_close(wider.conv1.weight[:8, :, 1, 1], torch.eye(8))  # the first `in` filters only
    assert float(wider.conv1.weight[8:].abs().sum()) > 0  # the rest keep PyTorch's random init
    torch.testing.assert_close(wider.shortcut[0].weight[:8, :, 0, 0], torch.eye(8))
    with pytest.raises(ValueError, match="init 'lsuv' is not one of"):
        CifarResNet(widths=(8,), blocks=(1,), init="lsuv")


def test_max_pool_head_with_a_logit_scale():
    model = CifarResNet(widths=(8, 16), blocks=(1, 1), head="max", logit_scale=1 / 9).eval()
    feats = model.forward_features(torch.randn(2, 3, 32, 32))
    pooled = feats.amax(dim=(2, 3))
    torch.testing.assert_close(model.forward_head(feats, pre_logits=True), pooled)
    torch.testing.assert_close(model.forward_head(feats), model.fc(pooled) / 9)
    with pytest.raises(ValueError, match="head 'attn' is not one of"):
        CifarResNet(widths=(8,), blocks=(1,), head="attn")


def test_the_student_describes_its_own_architecture():
    """The assignment's notation, read off the modules by the class itself (distill-paper's table and sentence)."""
    from distill.models import architecture

    kwargs = dict(whiten=True, act="gelu", norm_weight=False, init="dirac", head="max", logit_scale=0.125)
    arch = timm.create_model("cifar_resnet_lite", num_classes=10, **kwargs).architecture()
    assert arch["block"] == {"inner_activation": "GELU", "norm_weights": "frozen at 1"}
    assert arch["head"] == {"pool": "max", "logit_scale": 0.125} and arch["N"] == 3 and arch["P"] == 3
    assert [la["channels"] for la in arch["layers"]] == [64, 256, 256] and arch["stem"]["whitening"]
    assert [la["skip_kernel"] for la in arch["layers"]] == [0, 1, 0] and arch["layers"][1]["downsample"] == "max-pool"
    assert arch["trainable_params"] == count_trainable(timm.create_model("cifar_resnet_lite", num_classes=10, **kwargs))
    with pytest.raises(ValueError, match="no stem and stages of residual blocks"):
        architecture(timm.create_model("cifar_air94", num_classes=10))


def test_cifar_resnet_air_is_lite_with_the_airbench_kwargs():
    """BENCHMARKS.md's issue-24 rows trained cifar_resnet_lite with these kwargs; cifar_resnet_air is that network."""
    kwargs = dict(whiten=True, act="gelu", norm_weight=False, init="dirac", head="max", logit_scale=1 / 9,
                  bn_momentum=0.4, bn_eps=1e-12)  # fmt: skip
    torch.manual_seed(0)
    air = timm.create_model("cifar_resnet_air", num_classes=10).eval()
    torch.manual_seed(0)
    lite = timm.create_model("cifar_resnet_lite", num_classes=10, **kwargs).eval()
    assert count_trainable(air) == count_trainable(lite) == 2_024_930
    assert air.architecture() == lite.architecture()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(air(x), lite(x))
    assert all(m.momentum == 0.4 and m.eps == 1e-12 for m in air.modules() if isinstance(m, torch.nn.BatchNorm2d))
