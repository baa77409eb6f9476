"""The paper's residual and plain networks: ImageNet (Table 1) and CIFAR-10 (Sec. 4.2).

* ``ResNet``: the stem and named stages (``res2`` .. ``res5``); ``forward`` returns a dict of the
  feature maps named in ``out_features``, as a detection backbone must. The Detectron2 plugin
  registers it, unchanged, as a detectron2 ``Backbone`` (``resnet_backbone.detection``).
* ``ResNetClassifier``: the same stem and stages, global average pooling and the
  fully-connected layer ``linear``; ``forward`` returns logits.

Both take plain keyword arguments (a config system can build them directly) and share every
stage and block; ``build_resnet`` returns one or the other.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import (BasicBlock, BottleneckBlock, CifarStem, ImageNetStem, check_shortcut,
                     make_stage)
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


def check_image_batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself when it is an (N, C, H, W) batch, else a ``ValueError`` that says so.

    A leaf for torch.fx (``torch.fx.wrap`` below): a shape test in ``forward`` would be control
    flow on a traced value, which FX tracing (torchvision's ``create_feature_extractor``) refuses;
    TorchScript, ``torch.export`` and ``torch.compile`` (the rank is static) see through it."""
    if x.dim() != 4:
        raise ValueError(f"ResNet takes (N, C, H, W) inputs; got shape {list(x.shape)}")
    return x


torch.fx.wrap("check_image_batch")


class FeatureShape(NamedTuple):
    """Channels and stride of a backbone's output map (detectron2's ``ShapeSpec`` fields)."""

    channels: int
    stride: int


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


class ResNetBody(nn.Module):
    """The stem and stages ``res2`` .. shared by ``ResNet`` and ``ResNetClassifier``.

    Any input size works (the network is fully convolutional), as the paper's multi-scale test
    needs. ``num_stages`` builds only the first stages (a backbone that outputs ``res4`` has no
    ``res5``). ``freeze_at=k`` freezes the stem (k >= 1) and the first k-1 stages and turns their
    BN into FrozenBN, as detectron2's ``MODEL.RESNETS.FREEZE_AT``.
    """

    def __init__(self, depth: int, *, cifar: bool = False, residual: bool = True,
                 shortcut: Optional[str] = None, stride_in_1x1: bool = True,
                 norm: NormSpec = "BN", res5_dilation: int = 1, in_channels: int = 3,
                 zero_init_residual: bool = False, num_stages: Optional[int] = None):
        super().__init__()
        norm = check_norm(norm)
        shortcut = check_shortcut(shortcut or ("A" if cifar else "B"))
        if res5_dilation not in (1, 2):
            raise ValueError(f"res5_dilation must be 1 or 2; got {res5_dilation}")
        if cifar:
            plans, self.stem = cifar_stage_plans(depth), CifarStem(in_channels, 16, norm)
        else:
            plans, self.stem = imagenet_stage_plans(depth), ImageNetStem(in_channels, 64, norm)
        plans = plans[:num_stages] if num_stages is not None else plans
        self.residual, self.zero_init_residual = residual, zero_init_residual
        # detectron2's layout: each stage is a child named res2.. (the checkpoint names); the
        # tuple of names and the list of the same modules serve Python code (freeze, analysis).
        self.stage_names: Tuple[str, ...] = tuple(p.name for p in plans)
        self.stages: List[nn.Sequential] = []
        self._out_feature_strides: Dict[str, int] = {"stem": self.stem.stride}
        self._out_feature_channels: Dict[str, int] = {"stem": self.stem.out_channels}
        stride = self.stem.stride
        for plan in plans:
            stage = build_stage(plan, norm=norm, shortcut=shortcut, residual=residual,
                                stride_in_1x1=stride_in_1x1,
                                dilation=res5_dilation if plan.name == "res5" else 1)
            self.add_module(plan.name, stage)
            self.stages.append(stage)
            stride *= math.prod(block.stride for block in stage)
            self._out_feature_strides[plan.name] = stride
            self._out_feature_channels[plan.name] = plan.out_channels

    def init_weights(self) -> None:
        """The paper's initialisation (``msra_init_``) of every layer, once all exist."""
        msra_init_(self)
        if self.zero_init_residual and self.residual:
            for module in self.modules():
                norm_layer = last_norm(module) if isinstance(module, (BasicBlock, BottleneckBlock)) else None
                if isinstance(norm_layer, (nn.BatchNorm2d, nn.GroupNorm)):
                    nn.init.zeros_(norm_layer.weight)

    def freeze(self, freeze_at: int = 0) -> "ResNetBody":
        if not 0 <= freeze_at <= len(self.stage_names) + 1:
            raise ValueError(f"freeze_at must be in 0..{len(self.stage_names) + 1} (0: nothing, "
                             f"1: the stem, k: the stem and the first k-1 stages); got {freeze_at}")
        if freeze_at >= 1:
            self.stem.freeze()
        for i, stage in enumerate(self.stages, start=2):
            if freeze_at >= i:
                for block in stage:
                    block.freeze()
        return self

    def run_stages(self, x: torch.Tensor, keep: List[str]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The stem and every stage on ``x``: the last map, and the maps named in ``keep``.

        The loop runs over ``named_children()``, which TorchScript unrolls, rather than over
        the Python list ``self.stages``, which it cannot type (a list of modules)."""
        outputs: Dict[str, torch.Tensor] = {}
        for name, module in self.named_children():
            if name == "stem" or name in self.stage_names:
                x = module(x)
                if name in keep:
                    outputs[name] = x
        return x, outputs


class ResNet(ResNetBody):
    """The backbone: ``forward`` returns ``{name: feature map}`` for each of ``out_features``
    ("stem", "res2" .. "res5"; default: the last stage). Stages after the last requested one are
    not built. ``output_shape()`` gives each output's channels and stride."""

    def __init__(self, depth: int, *, out_features: Optional[Sequence[str]] = None,
                 freeze_at: int = 0, cifar: bool = False, **body_kwargs):
        stages = [p.name for p in (cifar_stage_plans(depth) if cifar else imagenet_stage_plans(depth))]
        valid = ["stem", *stages]
        out_features = list(out_features or [stages[-1]])
        bad = [f for f in out_features if f not in valid]
        if bad:
            raise ValueError(f"Unknown out feature(s) {bad}; valid choices: {valid}")
        num_stages = max(valid.index(f) for f in out_features)
        super().__init__(depth, cifar=cifar, num_stages=num_stages, **body_kwargs)
        self._out_features = out_features
        self.init_weights()
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.run_stages(check_image_batch(x), self._out_features)[1]

    def output_shape(self) -> Dict[str, FeatureShape]:
        """Channels and stride of each output."""
        return {name: FeatureShape(self._out_feature_channels[name], self._out_feature_strides[name])
                for name in self._out_features}


class ResNetClassifier(ResNetBody):
    """ResNet + global average pooling + fully-connected layer (``linear``); returns logits."""

    def __init__(self, depth: int, *, num_classes: int, **body_kwargs):
        super().__init__(depth, **body_kwargs)
        self.num_classes = num_classes
        self.linear = nn.Linear(self._out_feature_channels[self.stage_names[-1]], num_classes)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (before pooling)."""
        return self.run_stages(check_image_batch(x), [])[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.forward_features(x), 1)
        return self.linear(torch.flatten(x, 1))


def build_resnet(depth: int, *, num_classes: Optional[int] = None,
                 out_features: Optional[Sequence[str]] = None, freeze_at: int = 0,
                 **body_kwargs) -> nn.Module:
    """Build one of the paper's networks.

    Args:
        depth: 18/34/50/101/152 (ImageNet, Table 1) or 6n+2 with ``cifar=True`` (Sec. 4.2).
        num_classes: if set, a ``ResNetClassifier`` returning logits; else a ``ResNet`` backbone.
        out_features, freeze_at: backbone options, as detectron2's MODEL.RESNETS.
        body_kwargs: ``cifar``, ``residual`` (False: the plain counterpart), ``shortcut`` ('A',
            'B' or 'C', Sec. 3.3; default B for ImageNet, A for CIFAR), ``stride_in_1x1``
            (bottleneck downsampling in the first 1x1 conv, the paper's, or the 3x3),
            ``norm`` (detectron2 norm names), ``res5_dilation``, ``in_channels``,
            ``zero_init_residual`` (each block's last BN starts at zero; not in the paper).
    """
    if num_classes is None:
        return ResNet(depth, out_features=out_features, freeze_at=freeze_at, **body_kwargs)
    if out_features is not None or freeze_at:
        raise ValueError("out_features and freeze_at are backbone options; a classifier "
                         "(num_classes set) uses every stage and freezes nothing")
    return ResNetClassifier(depth, num_classes=num_classes, **body_kwargs)
