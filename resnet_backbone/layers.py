"""Small layers shared by every network of the package: a convolution that owns its norm layer,
the parameter-free option-A shortcut, and the paper's weight initialisation."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from detectron2.layers import get_norm
from torch import nn

NormSpec = Union[str, None]

#: Norm names accepted everywhere (detectron2's ``get_norm`` names); "" means no norm.
NORMS = ("BN", "SyncBN", "FrozenBN", "GN", "nnSyncBN", "naiveSyncBN", "")


def check_norm(norm: NormSpec) -> str:
    norm = norm or ""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; valid choices: {', '.join(repr(n) for n in NORMS)}")
    return norm


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its norm layer, stored as the child ``norm``.

    The child's name is detectron2's (``res2.0.conv1.norm``), so checkpoints of detectron2's
    ResNet and the MSRA caffe2 files map onto it name for name. Unlike detectron2's ``Conv2d`` it
    has no per-call guard for empty inputs, so it stays a plain conv + norm for ``torch.compile``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, norm: NormSpec = "BN"):
        norm = check_norm(norm)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=not norm)
        self.norm = get_norm(norm, out_channels) if norm else None
        # A strided 1x1 conv equals a stride-1 1x1 conv on the subsampled input (same result,
        # same FLOPs); measured ~1.3-3x faster forward+backward on CPU (oneDNN), but slower
        # with cuDNN (an extra strided copy), so it is taken on CPU only (BENCHMARKS.md).
        self._subsample_1x1 = (self.kernel_size == (1, 1) and self.stride != (1, 1)
                               and self.padding == (0, 0) and self.padding_mode == "zeros")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cpu and getattr(self, "_subsample_1x1", False):
            # (getattr: the flag is absent on modules pickled before it existed)
            x = F.conv2d(x[:, :, :: self.stride[0], :: self.stride[1]], self.weight, self.bias,
                         groups=self.groups)
        else:
            x = self._conv_forward(x, self.weight, self.bias)
        return x if self.norm is None else self.norm(x)


class ZeroPadShortcut(nn.Module):
    """Option A of the paper (Sec. 3.3): identity, subsampled by ``stride`` when the map size
    halves, with zero channels appended when the width grows. It has no parameter."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"Option A cannot reduce channels ({in_channels} -> {out_channels}); "
                             "use shortcut 'B' or 'C'.")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def msra_init_(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every convolution (fan-out, ReLU gain, as the MSRA
    Caffe models, detectron2 and torchvision), unit-scale zero-shift norms, and a N(0, 0.01)
    classifier, as in the paper's Caffe models."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.SyncBatchNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def last_norm(block: nn.Module) -> Optional[nn.Module]:
    """The norm layer of a block's last convolution (zeroed by ``zero_init_residual``)."""
    last = getattr(block, "conv3", None) or getattr(block, "conv2", None)
    return None if last is None else last.norm
