"""Teachers: larger residual networks trained from scratch; no parameter cap applies.

Importing this package registers them with timm (``timm.create_model("cifar_resnet_t", num_classes=10)``).
They reuse the students' block, only wider, so teacher and student differ in capacity alone.
"""

from timm.models import register_model

from students.resnet import CifarResNet, build_resnet


@register_model
def cifar_resnet_t(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Default teacher, 11.1M: three stages (128, 256, 512) x 2 blocks."""
    return build_resnet("cifar_resnet_t", dict(widths=(128, 256, 512), blocks=(2, 2, 2)), kwargs)


@register_model
def cifar_resnet_t_wide(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A stronger, slower teacher, 25M: three stages (192, 384, 768) x 2 blocks."""
    return build_resnet("cifar_resnet_t_wide", dict(widths=(192, 384, 768), blocks=(2, 2, 2)), kwargs)


@register_model
def cifar_resnet_t_tiny(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A tiny teacher for smoke recipes and tests only."""
    return build_resnet("cifar_resnet_t_tiny", dict(widths=(16, 32, 64), blocks=(1, 1, 1)), kwargs)
