"""Students: residual networks of the assignment's block, each at most 5M trainable parameters.

Importing this package registers them with timm: ``timm.create_model("cifar_resnet_s", num_classes=10)``.
Every builder checks the cap, so an over-cap variant or override raises
:class:`~students.resnet.ParamCapError` with the count.
"""

from timm.models import register_model

from students.resnet import (
    PARAM_CAP,
    CifarResNet,
    ParamCapError,
    ResidualBlock,
    build_resnet,
    check_param_cap,
    count_flops,
    count_trainable,
)

__all__ = [
    "PARAM_CAP",
    "CifarResNet",
    "ParamCapError",
    "ResidualBlock",
    "check_param_cap",
    "count_flops",
    "count_trainable",
]


@register_model
def cifar_resnet_s(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Default student, 4.68M: four stages (64, 128, 240, 240) x 2 blocks, like ResNet-18 trimmed under the cap."""
    return build_resnet("cifar_resnet_s", dict(widths=(64, 128, 240, 240), blocks=(2, 2, 2, 2)), kwargs, PARAM_CAP)


@register_model
def cifar_resnet_m(pretrained: bool = False, **kwargs) -> CifarResNet:
    """4.90M, three stages (128, 256, 512) x 1 block: fewer, wider layers that run fast on a GPU."""
    return build_resnet("cifar_resnet_m", dict(widths=(128, 256, 512), blocks=(1, 1, 1)), kwargs, PARAM_CAP)


@register_model
def cifar_resnet_fast(pretrained: bool = False, **kwargs) -> CifarResNet:
    """1.2M, three stages (64, 128, 256) x 1 block with a 32-channel stem: the speed-run student."""
    return build_resnet(
        "cifar_resnet_fast", dict(widths=(64, 128, 256), blocks=(1, 1, 1), stem_width=32), kwargs, PARAM_CAP
    )


@register_model
def cifar_resnet_lite(pretrained: bool = False, **kwargs) -> CifarResNet:
    """2.0M, a 64-channel stem at 32x32, then max-pools and (64, 256, 256) x 1 block at 16, 8 and 4 pixels.

    airbench94's layout in the assignment's block: half the FLOPs of ``cifar_resnet_fast`` (0.18
    against 0.35 GFLOP per image forward), and only the stem's output is a 32x32 map, where
    ``cifar_resnet_fast`` runs a whole stage at 32x32; more parameters, spent at low resolution.
    """
    return build_resnet(
        "cifar_resnet_lite",
        dict(widths=(64, 256, 256), blocks=(1, 1, 1), stem_width=64, downsample="pool", stem_pool=True),
        kwargs,
        PARAM_CAP,
    )


@register_model
def cifar_resnet_tiny(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A few thousand parameters, for smoke recipes and tests only."""
    return build_resnet("cifar_resnet_tiny", dict(widths=(8, 16, 32), blocks=(1, 1, 1)), kwargs, PARAM_CAP)
