"""The paper's building blocks (Fig. 2 and Fig. 5) and stems, with the shortcut options of
Sec. 3.3. One implementation serves the classifiers and the Detectron2 backbone.

Parameter names follow detectron2's ResNet (``conv1``, ``conv2``, ``conv3``, ``shortcut``, each
with a ``norm`` child) so its checkpoints and the MSRA caffe2 files load name for name.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm, FrozenBatchNorm2d, NormSpec, ZeroPadShortcut

#: Shortcut options of Sec. 3.3: A zero-pads, B projects only when the shape changes, C always.
SHORTCUTS = ("A", "B", "C")


def check_shortcut(shortcut: str) -> str:
    if shortcut not in SHORTCUTS:
        raise ValueError(f"Unknown shortcut option {shortcut!r}; valid choices: "
                         "'A' (identity + zero-padding), 'B' (projection when dimensions change), "
                         "'C' (projection on every shortcut)")
    return shortcut


def make_shortcut(in_channels: int, out_channels: int, stride: int, shortcut: str,
                  norm: NormSpec) -> Optional[nn.Module]:
    """The shortcut branch of a residual block; None means plain identity."""
    check_shortcut(shortcut)
    changes_shape = stride != 1 or in_channels != out_channels
    if shortcut == "C" or (shortcut == "B" and changes_shape):
        return ConvNorm(in_channels, out_channels, 1, stride=stride, norm=norm)
    if changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return None


class Block(nn.Module):
    """A stem or block: its input and output widths and its stride (what a stage builder and a
    detection backbone need to know), and ``freeze()``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def freeze(self) -> "Block":
        """No parameter is trained any more and BN becomes FrozenBN (detectron2's FREEZE_AT)."""
        for p in self.parameters():
            p.requires_grad_(False)
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


class ResidualBlockBase(Block):
    """What residual and plain blocks share: the optional shortcut and the final addition.

    ``residual=False`` gives the paper's plain counterpart (Fig. 3 middle): the same layers with
    no shortcut at all, so ``out = relu(F(x))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, *, shortcut: str,
                 norm: NormSpec, residual: bool):
        super().__init__(in_channels, out_channels, stride)
        self.residual = residual
        self.shortcut = (make_shortcut(in_channels, out_channels, stride, shortcut, norm)
                         if residual else None)

    def residual_function(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual_function(x)
        if self.residual:
            # In place, as torchvision and detectron2: F(x)'s last op (norm or conv) does not
            # keep its output for backward, and this saves one feature-map allocation per block.
            out += x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out)


class BasicBlock(ResidualBlockBase):
    """Two 3x3 convolutions (Fig. 5 left): ResNet-18/34 and the CIFAR-10 nets."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1,
                 norm: NormSpec = "BN", shortcut: str = "B", residual: bool = True,
                 dilation: int = 1):
        super().__init__(in_channels, out_channels, stride, shortcut=shortcut, norm=norm,
                         residual=residual)
        self.conv1 = ConvNorm(in_channels, out_channels, 3, stride=stride, padding=dilation,
                              dilation=dilation, norm=norm)
        self.conv2 = ConvNorm(out_channels, out_channels, 3, padding=dilation, dilation=dilation,
                              norm=norm)

    def residual_function(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu_(self.conv1(x)))


class BottleneckBlock(ResidualBlockBase):
    """1x1 reduce, 3x3, 1x1 restore (Fig. 5 right): ResNet-50/101/152.

    ``stride_in_1x1=True`` (the paper's MSRA models, the default) downsamples in the first 1x1
    convolution, which gives Table 1's FLOPs; False puts the stride in the 3x3 convolution
    (torchvision's "ResNet v1.5").
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int,
                 stride: int = 1, norm: NormSpec = "BN", shortcut: str = "B",
                 residual: bool = True, stride_in_1x1: bool = True, num_groups: int = 1,
                 dilation: int = 1):
        super().__init__(in_channels, out_channels, stride, shortcut=shortcut, norm=norm,
                         residual=residual)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, stride=stride_1x1, norm=norm)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3, stride=stride_3x3,
                              padding=dilation, dilation=dilation, groups=num_groups, norm=norm)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, norm=norm)

    def residual_function(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.relu_(self.conv2(F.relu_(self.conv1(x)))))


class ImageNetStem(Block):
    """conv1 of Table 1: 7x7/64 stride 2, BN, ReLU, then 3x3 max pool stride 2 (stride 4)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = ConvNorm(in_channels, out_channels, 7, stride=2, padding=3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu_(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class CifarStem(Block):
    """The CIFAR-10 nets' first layer (Sec. 4.2): 3x3/16 stride 1, BN, ReLU (stride 1)."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16, norm: NormSpec = "BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = ConvNorm(in_channels, out_channels, 3, padding=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu_(self.conv1(x))


def make_stage(block_class: type, num_blocks: int, *, in_channels: int, out_channels: int,
               first_stride: int, **block_kwargs) -> nn.Sequential:
    """``num_blocks`` blocks; the first one changes stride and width (conv3_1, conv4_1, ...)."""
    blocks = []
    for i in range(num_blocks):
        blocks.append(block_class(in_channels if i == 0 else out_channels, out_channels,
                                  stride=first_stride if i == 0 else 1, **block_kwargs))
    return nn.Sequential(*blocks)
