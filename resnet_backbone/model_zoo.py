"""Model names and ``create_model``: every network the paper trains, by name, like
torchvision's ``get_model`` and timm's ``create_model``."""
import inspect
from typing import Callable, Dict, List

from torch import nn

from .resnet import CIFAR_PAPER_DEPTHS, IMAGENET_DEPTHS, build_resnet
from .vgg import VGG16Classifier

_MODELS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    if name in _MODELS:
        raise ValueError(f"Model {name!r} is already registered")
    _MODELS[name] = builder


def list_models() -> List[str]:
    """Names accepted by ``create_model``, in the paper's order."""
    return list(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a network by name, e.g. ``create_model("resnet50", num_classes=1000)``.

    Keyword arguments (those that apply to the network): ``num_classes`` (1000 ImageNet, 10
    CIFAR), ``shortcut`` ('A'|'B'|'C', default B for ImageNet and A for CIFAR; residual nets only),
    ``stride_in_1x1`` (default True, the paper's placement), ``norm``, ``zero_init_residual``;
    VGG-16 takes ``num_classes``, ``dropout`` and ``ceil_mode``. Unknown names or options raise
    ValueError listing the valid ones.
    """
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid choices: {', '.join(_MODELS)}")
    builder = _MODELS[name]
    accepted = list(inspect.signature(builder).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name} does not take option(s) {unknown}; valid options: {accepted}")
    return builder(**kwargs)


def _imagenet_builder(depth: int, residual: bool) -> Callable[..., nn.Module]:
    if residual:
        def build(num_classes: int = 1000, shortcut: str = "B", stride_in_1x1: bool = True,
                  norm: str = "BN", zero_init_residual: bool = False) -> nn.Module:
            return build_resnet(depth, shortcut=shortcut, stride_in_1x1=stride_in_1x1, norm=norm,
                                num_classes=num_classes, zero_init_residual=zero_init_residual)
    else:
        def build(num_classes: int = 1000, stride_in_1x1: bool = True,
                  norm: str = "BN") -> nn.Module:
            return build_resnet(depth, residual=False, stride_in_1x1=stride_in_1x1, norm=norm,
                                num_classes=num_classes)
    return build


def _cifar_builder(depth: int, residual: bool) -> Callable[..., nn.Module]:
    if residual:
        def build(num_classes: int = 10, shortcut: str = "A", norm: str = "BN",
                  zero_init_residual: bool = False) -> nn.Module:
            return build_resnet(depth, cifar=True, shortcut=shortcut, norm=norm,
                                num_classes=num_classes, zero_init_residual=zero_init_residual)
    else:
        def build(num_classes: int = 10, norm: str = "BN") -> nn.Module:
            return build_resnet(depth, cifar=True, residual=False, norm=norm,
                                num_classes=num_classes)
    return build


def vgg16(num_classes: int = 1000, dropout: float = 0.5, ceil_mode: bool = False) -> nn.Module:
    return VGG16Classifier(num_classes=num_classes, dropout=dropout, ceil_mode=ceil_mode)


for _depth in IMAGENET_DEPTHS:
    register_model(f"resnet{_depth}", _imagenet_builder(_depth, residual=True))
for _depth in (18, 34):
    register_model(f"plain{_depth}", _imagenet_builder(_depth, residual=False))
register_model("vgg16", vgg16)
for _depth in CIFAR_PAPER_DEPTHS:
    register_model(f"cifar_resnet{_depth}", _cifar_builder(_depth, residual=True))
for _depth in CIFAR_PAPER_DEPTHS[:-1]:
    register_model(f"cifar_plain{_depth}", _cifar_builder(_depth, residual=False))
