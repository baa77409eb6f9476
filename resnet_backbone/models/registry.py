"""Every network the paper trains, by name: ``create_model("resnet50")``, like torchvision's
``get_model`` and timm's ``create_model``.

Each name is registered with its builder (keyword arguments with defaults) and what it is
(depth, CIFAR or ImageNet, residual or plain), so that code which needs to know (the trainers,
the backbone export) asks ``model_spec(name)`` instead of parsing the name.
"""
import inspect
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from torch import nn

from .features import FeatureListNet
from .resnet import CIFAR_PAPER_DEPTHS, IMAGENET_DEPTHS, ResNetClassifier
from .vgg import VGG16Classifier


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and architecture.

    ``family`` is "resnet" (residual or plain, ImageNet or CIFAR) or "vgg16"; ``depth`` counts
    weighted layers; ``default_shortcut`` is the builder's default option (None without one).
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str
    depth: int
    cifar: bool = False
    residual: bool = True

    @property
    def options(self) -> List[str]:
        """Keyword arguments the builder takes."""
        return list(inspect.signature(self.builder).parameters)

    @property
    def default_shortcut(self) -> Optional[str]:
        param = inspect.signature(self.builder).parameters.get("shortcut")
        return None if param is None else param.default


_MODELS: Dict[str, ModelSpec] = {}


def register_model(name: str, builder: Callable[..., nn.Module], *, family: str = "resnet",
                   depth: int, cifar: bool = False, residual: bool = True) -> ModelSpec:
    """Make ``builder`` (keyword arguments with defaults -> model) ``create_model(name)``."""
    if name in _MODELS:
        raise ValueError(f"Model {name!r} is already registered")
    _MODELS[name] = ModelSpec(name, builder, family, depth, cifar, residual)
    return _MODELS[name]


def list_models() -> List[str]:
    """Names accepted by ``create_model``, in the paper's order."""
    return list(_MODELS)


def model_spec(name: str) -> ModelSpec:
    """What the model called ``name`` is; ValueError listing the valid names if unknown."""
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid choices: {', '.join(_MODELS)}")
    return _MODELS[name]


def create_model(name: str, *, weights: Optional[str] = None, features_only: bool = False,
                 out_indices: Optional[Sequence[int]] = None, **kwargs) -> nn.Module:
    """Build a network by name, e.g. ``create_model("resnet50", num_classes=1000)``.

    Keyword arguments (those that apply to the network): ``num_classes`` (1000 ImageNet, 10
    CIFAR), ``shortcut`` ('A'|'B'|'C', default B for ImageNet and A for CIFAR; residual nets only),
    ``stride_in_1x1`` (default True, the paper's placement), ``norm``, ``zero_init_residual``;
    VGG-16 takes ``num_classes``, ``dropout`` and ``ceil_mode``. ``features_only=True`` (timm's
    interface, ``.features``): the stage maps of ``out_indices`` as a list, described by
    ``model.feature_info``. Unknown names or options raise ValueError listing the valid ones.

    ``weights``: a name of ``resnet_backbone.weights_registry`` (``"resnet50.torchvision"``: its
    file in ``weights_dir()``, sha256 verified) or the path of a weights file in any format of
    ``resnet_backbone.convert``. A named entry's ``stride_in_1x1`` / ``shortcut`` are the
    defaults; setting them otherwise is a ValueError, as are weights of another network. The
    norm stays the caller's: MSRA's caffe2 files carry no BN statistics (their BN layers load as
    the exact affine map in eval mode), so fine-tune them with ``norm="FrozenBN"``.
    """
    spec = model_spec(name)
    unknown = sorted(set(kwargs) - set(spec.options))
    if unknown:
        raise ValueError(f"{name} does not take option(s) {unknown}; valid options: {spec.options}")
    if out_indices is not None and not features_only:
        raise ValueError("out_indices applies with features_only=True")
    if weights:
        kwargs = {**_weights_options(name, weights, kwargs, spec.options), **kwargs}
    model = spec.builder(**kwargs)
    if weights:
        _load_weights(model, name, weights)
    return FeatureListNet(model, out_indices) if features_only else model


def _weights_options(name: str, weights: str, kwargs: Dict, options: Sequence[str]) -> Dict:
    """The builder options a named entry's weights were trained with (none for a path); a
    ValueError if ``kwargs`` sets one of them otherwise. The file is found (and a named one
    verified) first: a bad name or path fails before the network is built."""
    from ..weights_registry import entry_for_model, resolve_weights  # imports models/: lazily

    entry = entry_for_model(weights, name)
    resolve_weights(weights)
    if entry is None:
        return {}
    wanted = {k: v for k, v in entry.model_options().items() if k in options}
    for key, value in wanted.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"Weights {entry.name} were trained with {key}={value!r}, the call "
                             f"sets {key}={kwargs[key]!r}: leave it out (it is taken from the "
                             f"weights) or set {key}={value!r}")
    return wanted


def _load_weights(model: nn.Module, name: str, weights: str) -> None:
    """``weights`` (a registry name or a path) into ``model``, through the checked loader."""
    from ..checkpoint import load_state_dict_checked
    from ..weights_registry import load_named_weights

    state = load_named_weights(weights, name, model)
    load_state_dict_checked(model, state, strict=False, source=str(weights))


def _imagenet_builder(depth: int, residual: bool) -> Callable[..., nn.Module]:
    """Table 1's network of ``depth`` layers (Sec. 3.4), or its plain counterpart."""
    if residual:
        def build(num_classes: int = 1000, shortcut: str = "B", stride_in_1x1: bool = True,
                  norm: str = "BN", zero_init_residual: bool = False) -> nn.Module:
            return ResNetClassifier(depth, num_classes=num_classes, shortcut=shortcut, norm=norm,
                                    stride_in_1x1=stride_in_1x1,
                                    zero_init_residual=zero_init_residual)
    else:
        def build(num_classes: int = 1000, stride_in_1x1: bool = True,
                  norm: str = "BN") -> nn.Module:
            return ResNetClassifier(depth, num_classes=num_classes, residual=False, norm=norm,
                                    stride_in_1x1=stride_in_1x1)
    return build


def _cifar_builder(depth: int, residual: bool) -> Callable[..., nn.Module]:
    """The CIFAR-10 network of 6n+2 = ``depth`` layers (Sec. 4.2, option A), or plain."""
    if residual:
        def build(num_classes: int = 10, shortcut: str = "A", norm: str = "BN",
                  zero_init_residual: bool = False) -> nn.Module:
            return ResNetClassifier(depth, cifar=True, num_classes=num_classes, shortcut=shortcut,
                                    norm=norm, zero_init_residual=zero_init_residual)
    else:
        def build(num_classes: int = 10, norm: str = "BN") -> nn.Module:
            return ResNetClassifier(depth, cifar=True, residual=False, num_classes=num_classes,
                                    norm=norm)
    return build


def vgg16(num_classes: int = 1000, dropout: float = 0.5, ceil_mode: bool = False) -> nn.Module:
    """VGG-16 (configuration D), the baseline of Tables 3, 7 and 8."""
    return VGG16Classifier(num_classes=num_classes, dropout=dropout, ceil_mode=ceil_mode)


# The paper's networks, in its order: resnet18 .. resnet152 (Table 1), plain18, plain34
# (Table 2), vgg16, cifar_resnet20 .. cifar_resnet1202 (Table 6), cifar_plain20 .. 110 (Fig. 6).
for _depth in IMAGENET_DEPTHS:
    register_model(f"resnet{_depth}", _imagenet_builder(_depth, True), depth=_depth)
for _depth in (18, 34):
    register_model(f"plain{_depth}", _imagenet_builder(_depth, False), depth=_depth, residual=False)
register_model("vgg16", vgg16, family="vgg16", depth=16, residual=False)
for _depth in CIFAR_PAPER_DEPTHS:
    register_model(f"cifar_resnet{_depth}", _cifar_builder(_depth, True), depth=_depth, cifar=True)
for _depth in CIFAR_PAPER_DEPTHS[:-1]:
    register_model(f"cifar_plain{_depth}", _cifar_builder(_depth, False), depth=_depth,
                   cifar=True, residual=False)
