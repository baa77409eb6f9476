"""The paper's residual and plain networks: ImageNet (Table 1) and CIFAR-10 (Sec. 4.2).

``ResNet`` is a detectron2 ``Backbone`` (stem + named stages, returning a dict of feature maps);
``ResNetClassifier`` adds global average pooling and the fully-connected layer and returns logits.
Both come from ``build_resnet``, which the Detectron2 plugin uses too.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import Backbone
from torch import nn

from .blocks import BasicBlock, BottleneckBlock, CifarStem, ImageNetStem, check_shortcut, make_stage
from .layers import NormSpec, check_norm, last_norm, msra_init_

#: Table 1: depth -> (block, blocks per stage conv2_x..conv5_x).
IMAGENET_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: Sec. 4.2: depth 6n+2 for these n (ResNet-20 ... ResNet-1202); other n work too.
CIFAR_PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)


@dataclass(frozen=True)
class StagePlan:
    """One stage of a network: its detectron2 name and how to build its blocks."""

    name: str
    block_class: type
    num_blocks: int
    in_channels: int
    out_channels: int
    first_stride: int
    bottleneck_channels: Optional[int] = None


def imagenet_stage_plans(depth: int, stem_channels: int = 64) -> List[StagePlan]:
    """res2..res5 of Table 1 (conv2_x..conv5_x)."""
    if depth not in IMAGENET_DEPTHS:
        raise ValueError(f"Unknown ImageNet ResNet depth {depth}; valid choices: "
                         f"{', '.join(map(str, IMAGENET_DEPTHS))}")
    kind, counts = IMAGENET_DEPTHS[depth]
    plans, in_channels = [], stem_channels
    for i, n in enumerate(counts):
        width = stem_channels * 2 ** i
        if kind == "basic":
            plan = StagePlan(f"res{i + 2}", BasicBlock, n, in_channels, width, 1 if i == 0 else 2)
        else:
            plan = StagePlan(f"res{i + 2}", BottleneckBlock, n, in_channels, width * 4,
                             1 if i == 0 else 2, bottleneck_channels=width)
        plans.append(plan)
        in_channels = plan.out_channels
    return plans


def cifar_stage_plans(depth: int) -> List[StagePlan]:
    """Three stages of 2n 3x3 layers on 32/16/8 maps with 16/32/64 filters (named res2..res4)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (the paper uses "
                         f"{', '.join(map(str, CIFAR_PAPER_DEPTHS))}); got {depth}")
    n = (depth - 2) // 6
    return [StagePlan(f"res{i + 2}", BasicBlock, n, 16 * 2 ** max(i - 1, 0), 16 * 2 ** i,
                      1 if i == 0 else 2) for i in range(3)]


def build_stage(plan: StagePlan, *, norm: NormSpec, shortcut: str, residual: bool,
                stride_in_1x1: bool, dilation: int = 1) -> nn.Sequential:
    """The blocks of one stage, ready to be a backbone stage or a detection ROI head's res5."""
    kwargs = dict(norm=norm, shortcut=shortcut, residual=residual, dilation=dilation)
    first_stride = plan.first_stride if dilation == 1 else 1
    if plan.block_class is BottleneckBlock:
        kwargs.update(bottleneck_channels=plan.bottleneck_channels, stride_in_1x1=stride_in_1x1)
    return make_stage(plan.block_class, plan.num_blocks, in_channels=plan.in_channels,
                      out_channels=plan.out_channels, first_stride=first_stride, **kwargs)


class ResNet(Backbone):
    """A stem and named stages; ``forward`` returns the feature maps named in ``out_features``.

    Any input size works (the network is fully convolutional), as the paper's multi-scale
    test needs. ``freeze_at=k`` freezes the stem (k >= 1) and the first k-1 stages and turns
    their BN into FrozenBN, as detectron2's ``MODEL.RESNETS.FREEZE_AT``.
    """

    def __init__(self, stem: nn.Module, stages: Dict[str, nn.Sequential],
                 out_features: Optional[Sequence[str]] = None, freeze_at: int = 0):
        super().__init__()
        self.stem = stem
        self.stage_names = list(stages)
        valid = ["stem", *self.stage_names]
        out_features = list(out_features or [self.stage_names[-1]])
        bad = [f for f in out_features if f not in valid]
        if bad:
            raise ValueError(f"Unknown out feature(s) {bad}; valid choices: {valid}")
        self._out_features = out_features
        self._out_feature_strides = {"stem": stem.stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        stride = stem.stride
        last = max(valid.index(f) for f in out_features)
        for name, stage in stages.items():
            if valid.index(name) > last:
                break  # stages after the last requested output are not built into the model
            self.add_module(name, stage)
            stride *= math.prod(block.stride for block in stage)
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = stage[-1].out_channels
        self.stage_names = [n for n in self.stage_names if hasattr(self, n)]
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0) -> "ResNet":
        if not 0 <= freeze_at <= len(self.stage_names) + 1:
            raise ValueError(f"freeze_at must be in 0..{len(self.stage_names) + 1} (0: nothing, "
                             f"1: the stem, k: the stem and the first k-1 stages); got {freeze_at}")
        if freeze_at >= 1:
            self.stem.freeze()
        for i, name in enumerate(self.stage_names, start=2):
            if freeze_at >= i:
                for block in getattr(self, name):
                    block.freeze()
        return self

    def forward_features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes (N, C, H, W) inputs; got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    forward = forward_features

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {name: ShapeSpec(channels=self._out_feature_channels[name],
                                stride=self._out_feature_strides[name])
                for name in self._out_features}


class ResNetClassifier(ResNet):
    """ResNet + global average pooling + fully-connected layer (``linear``); returns logits."""

    def __init__(self, stem: nn.Module, stages: Dict[str, nn.Sequential], num_classes: int):
        super().__init__(stem, stages)
        self.num_classes = num_classes
        self.linear = nn.Linear(self._out_feature_channels[self.stage_names[-1]], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)[self.stage_names[-1]]
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_resnet(depth: int, *, cifar: bool = False, residual: bool = True,
                 shortcut: Optional[str] = None, stride_in_1x1: bool = True, norm: NormSpec = "BN",
                 num_classes: Optional[int] = None, out_features: Optional[Sequence[str]] = None,
                 freeze_at: int = 0, res5_dilation: int = 1, in_channels: int = 3,
                 zero_init_residual: bool = False) -> ResNet:
    """Build one of the paper's networks.

    Args:
        depth: 18/34/50/101/152 (ImageNet, Table 1) or 6n+2 with ``cifar=True`` (Sec. 4.2).
        residual: False gives the plain counterpart (no shortcuts).
        shortcut: 'A', 'B' or 'C' (Sec. 3.3); default B for ImageNet, A for CIFAR.
        stride_in_1x1: bottleneck downsampling in the first 1x1 conv (paper / MSRA) or the 3x3.
        norm: detectron2 norm name ("BN", "SyncBN", "FrozenBN", "GN", "").
        num_classes: if set, a ``ResNetClassifier`` returning logits; else a ``ResNet`` backbone.
        out_features, freeze_at, res5_dilation: backbone options, as detectron2's MODEL.RESNETS.
        zero_init_residual: start each block's last BN at zero (not in the paper; off).
    """
    norm = check_norm(norm)
    shortcut = check_shortcut(shortcut or ("A" if cifar else "B"))
    if res5_dilation not in (1, 2):
        raise ValueError(f"res5_dilation must be 1 or 2; got {res5_dilation}")
    if cifar:
        plans, stem = cifar_stage_plans(depth), CifarStem(in_channels, 16, norm)
    else:
        plans, stem = imagenet_stage_plans(depth), ImageNetStem(in_channels, 64, norm)
    stages = {p.name: build_stage(p, norm=norm, shortcut=shortcut, residual=residual,
                                  stride_in_1x1=stride_in_1x1,
                                  dilation=res5_dilation if p.name == "res5" else 1)
              for p in plans}
    if num_classes is not None:
        if out_features is not None or freeze_at:
            raise ValueError("out_features and freeze_at are backbone options; a classifier "
                             "(num_classes set) uses every stage and freezes nothing")
        model: ResNet = ResNetClassifier(stem, stages, num_classes)
    else:
        model = ResNet(stem, stages, out_features)
    msra_init_(model)
    if zero_init_residual and residual:
        for module in model.modules():
            norm_layer = last_norm(module) if isinstance(module, (BasicBlock, BottleneckBlock)) else None
            if isinstance(norm_layer, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.zeros_(norm_layer.weight)
    return model.freeze(freeze_at)
