"""The paper's C4 detection head (appendix A) as a detectron2 ``ROI_HEADS_REGISTRY`` entry.

RoI pooling happens before conv5_1; conv5_x and global average pooling run per region, and two
sibling layers classify and regress. detectron2's ``Res5ROIHeads`` does exactly that; this
subclass only builds res5 with this package's stage code from ``MODEL.PAPER_RESNET``, so the head
matches the backbone (any depth, basic blocks for ResNet-18/34, shortcut option, plain nets).

``paper_res5`` builds that res5 from plain keywords, for LazyConfig files
(``res5=L(paper_res5)(depth=101)`` in ``L(PaperRes5ROIHeads)(...)``); ``build_res5_head`` reads
the same keywords from a yacs config and calls it.
"""
from typing import Tuple

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from ..models.layers import msra_init_
from ..models.resnet import build_stage, imagenet_stage_plans
from .backbone import config_errors, paper_resnet_options


def res5_out_channels(depth: int) -> int:
    """The width of conv5_x (2048 for ResNet-50/101/152, 512 for ResNet-18/34): the box
    predictor's input after global average pooling."""
    return imagenet_stage_plans(depth)[3].out_channels


def paper_res5(depth: int, *, shortcut: str = "B", residual: bool = True,
               stride_in_1x1: bool = True, norm: str = "FrozenBN") -> nn.Sequential:
    """conv5_x of Table 1 (first block stride 2), msra-initialised, as the C4 head's ``res5``.

    The keywords are ``PaperResNet``'s (give the same values as the backbone's so the weights of
    one ImageNet network fill both). Output width: ``res5_out_channels(depth)``.
    """
    res5 = build_stage(imagenet_stage_plans(depth)[3], norm=norm, shortcut=shortcut,
                       residual=residual, stride_in_1x1=stride_in_1x1)
    msra_init_(res5)
    return res5


def build_res5_head(cfg) -> Tuple[nn.Sequential, int]:
    """conv5_x of Table 1 (first block stride 2) and its output width, from MODEL.PAPER_RESNET."""
    options = paper_resnet_options(cfg)
    with config_errors("MODEL.PAPER_RESNET"):
        if cfg.MODEL.PAPER_RESNET.RES5_DILATION != 1:
            raise ValueError("RES5_DILATION must be 1 with the C4 res5 head (PaperRes5ROIHeads): "
                             "res5 runs on pooled regions; dilation is for a res5 in the backbone")
        return paper_res5(**options), res5_out_channels(options["depth"])


@ROI_HEADS_REGISTRY.register()
class PaperRes5ROIHeads(Res5ROIHeads):
    """``Res5ROIHeads`` whose res5 is the paper's conv5_x (``MODEL.PAPER_RESNET``).

    The pooled size is ``MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION`` (14 in our configs, so the
    stride-2 conv5_1 gives 7x7 maps as conv5_x has on a 224 ImageNet crop). Built from keywords
    (LazyConfig), it is ``Res5ROIHeads`` with ``res5=paper_res5(...)``.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        return build_res5_head(cfg)
