"""Detectron2 backbones built from the package's networks (``BACKBONE_REGISTRY`` entries).

* ``PaperResNet``: ``resnet_backbone.models.ResNet`` (the same stage and block code as the
  classifiers) as a detectron2 ``Backbone``; ``build_paper_resnet`` makes it from
  ``MODEL.PAPER_RESNET``.
* ``build_paper_resnet_fpn_backbone``: that ResNet as the bottom-up path of detectron2's ``FPN``.
* ``VGG16Backbone``: VGG-16 conv1_1..conv5_3 (no pool5, stride 16); ``build_vgg16_backbone``
  reads ``MODEL.VGG16``.

Every option is checked when the model is built; a bad value raises ``ValueError`` naming the
config key and the valid choices.
"""
from contextlib import contextmanager
from typing import Any, Dict, Iterator

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from ..models.resnet import ResNet
from ..models.vgg import VGG16
from .config import check_paper_improvements


class _ShapeSpecs:
    """``output_shape()`` as detectron2's ``ShapeSpec`` objects (built with keywords: it is a
    namedtuple in v0.6 and a dataclass on main)."""

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name],
                                stride=self._out_feature_strides[name])
                for name in self._out_features}


class PaperResNet(_ShapeSpecs, ResNet, Backbone):
    """The paper's ResNet (``resnet_backbone.models.ResNet``, same constructor and parameter
    names: ``stem.conv1``, ``res2.0.conv1.norm``, ...) as a detectron2 backbone."""


class VGG16Backbone(_ShapeSpecs, VGG16, Backbone):
    """VGG-16's convolutions (``resnet_backbone.models.VGG16``) as a detectron2 backbone."""


@contextmanager
def config_errors(node: str) -> Iterator[None]:
    """Re-raise a ``ValueError`` from the model code with the config node it came from."""
    try:
        yield
    except ValueError as e:
        raise ValueError(f"{node}: {e}") from e


def paper_resnet_options(cfg) -> Dict[str, Any]:
    """The network's keyword arguments from ``MODEL.PAPER_RESNET`` (the res5 head uses them too)."""
    if "PAPER_RESNET" not in cfg.MODEL:
        raise ValueError("The config has no MODEL.PAPER_RESNET node: call "
                         "resnet_backbone.detection.add_paper_resnet_config(cfg) before merging "
                         "the YAML.")
    c = cfg.MODEL.PAPER_RESNET
    return dict(depth=c.DEPTH, shortcut=c.SHORTCUT, residual=c.RESIDUAL,
                stride_in_1x1=c.STRIDE_IN_1X1, norm=c.NORM)


@BACKBONE_REGISTRY.register()
def build_paper_resnet(cfg, input_shape: ShapeSpec) -> PaperResNet:
    """The paper's ResNet as a detectron2 backbone (C4 by default: ``res4``, stride 16)."""
    options = paper_resnet_options(cfg)
    check_paper_improvements(cfg)
    c = cfg.MODEL.PAPER_RESNET
    with config_errors("MODEL.PAPER_RESNET"):
        return PaperResNet(**options, out_features=list(c.OUT_FEATURES), freeze_at=c.FREEZE_AT,
                           res5_dilation=c.RES5_DILATION, in_channels=input_shape.channels)


@BACKBONE_REGISTRY.register()
def build_paper_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """FPN (``MODEL.FPN.*``, ``LastLevelMaxPool`` for P6) over the paper's ResNet.

    ``MODEL.PAPER_RESNET.OUT_FEATURES`` must contain every ``MODEL.FPN.IN_FEATURES`` map.
    """
    bottom_up = build_paper_resnet(cfg, input_shape)
    missing = [f for f in cfg.MODEL.FPN.IN_FEATURES if f not in bottom_up.output_shape()]
    if missing:
        raise ValueError(f"MODEL.FPN.IN_FEATURES {list(cfg.MODEL.FPN.IN_FEATURES)} needs {missing} "
                         f"from the ResNet: add them to MODEL.PAPER_RESNET.OUT_FEATURES "
                         f"(now {list(cfg.MODEL.PAPER_RESNET.OUT_FEATURES)}).")
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
               top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape: ShapeSpec) -> VGG16Backbone:
    """VGG-16 conv1_1..conv5_3 (no pool5): the 512-channel, stride-16 ``conv5_3`` map."""
    check_paper_improvements(cfg)
    c = cfg.MODEL.VGG16
    with config_errors("MODEL.VGG16"):
        return VGG16Backbone(out_features=list(c.OUT_FEATURES), freeze_at=c.FREEZE_AT,
                             in_channels=input_shape.channels, ceil_mode=c.CEIL_MODE)
