"""Teachers: larger networks trained from scratch; no parameter cap applies.

Importing this package registers them with timm (``timm.create_model("cifar_air96", num_classes=10)``).
Two families: wider versions of the students' residual block (``cifar_resnet_t*``), so teacher and
student differ in capacity alone, and the fast airbench-style conv groups (``cifar_air*``,
:mod:`teachers.airnet`), which reach a given accuracy in far fewer GPU-seconds.
"""

from timm.models import register_model

from students.resnet import CifarResNet, build_resnet
from teachers.airnet import AirNet, build_airnet


@register_model
def cifar_resnet_t(pretrained: bool = False, **kwargs) -> CifarResNet:
    """Default teacher, 11.1M: three stages (128, 256, 512) x 2 blocks."""
    return build_resnet(dict(widths=(128, 256, 512), blocks=(2, 2, 2)), kwargs)


@register_model
def cifar_resnet_t_wide(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A stronger, slower teacher, 25M: three stages (192, 384, 768) x 2 blocks."""
    return build_resnet(dict(widths=(192, 384, 768), blocks=(2, 2, 2)), kwargs)


@register_model
def cifar_resnet_t_tiny(pretrained: bool = False, **kwargs) -> CifarResNet:
    """A tiny teacher for smoke recipes and tests only."""
    return build_resnet(dict(widths=(16, 32, 64), blocks=(1, 1, 1)), kwargs)


@register_model
def cifar_air94(pretrained: bool = False, **kwargs) -> AirNet:
    """airbench94's net, 1.97M: groups (64, 256, 256) of 2 convs."""
    return build_airnet(dict(widths=(64, 256, 256), convs=2), kwargs)


@register_model
def cifar_air95(pretrained: bool = False, **kwargs) -> AirNet:
    """airbench95's net, 4.6M: groups (128, 384, 384) of 2 convs."""
    return build_airnet(dict(widths=(128, 384, 384), convs=2), kwargs)


@register_model
def cifar_air96(pretrained: bool = False, **kwargs) -> AirNet:
    """airbench96's net, 9.9M: groups (128, 384, 512) of 3 convs, a residual over the last two."""
    return build_airnet(dict(widths=(128, 384, 512), convs=3, bn_momentum=0.1), kwargs)


@register_model
def cifar_air97(pretrained: bool = False, **kwargs) -> AirNet:
    """A wider airbench96, 22.3M: groups (192, 576, 768) of 3 convs, for long schedules."""
    return build_airnet(dict(widths=(192, 576, 768), convs=3, bn_momentum=0.1), kwargs)


@register_model
def cifar_air_tiny(pretrained: bool = False, **kwargs) -> AirNet:
    """A tiny member of the family for smoke recipes and tests only."""
    return build_airnet(dict(widths=(8, 16, 16), convs=3), kwargs)
