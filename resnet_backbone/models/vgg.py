"""VGG-16 (configuration D of Simonyan & Zisserman), the paper's baseline in Tables 3, 7 and 8.

``VGG16`` is the backbone of the 13 convolutions (conv1_1 .. conv5_3, no pool5:
stride 16, 512 channels, as Faster R-CNN uses it); ``VGG16Classifier`` adds pool5 and the
fc6/fc7/fc8 layers. The Detectron2 plugin registers ``VGG16`` as a detectron2 ``Backbone``
(``resnet_backbone.detection``). Layer names are Caffe's (``conv1_1``, ``fc6``) so that the detection box head
can take ``fc6``/``fc7`` from an ImageNet classifier checkpoint name for name.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .layers import msra_init_
from .resnet import FeatureShape

#: (block index, number of 3x3 convolutions, channels), configuration D.
VGG16_LAYOUT: Tuple[Tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 3, 256),
                                                  (4, 3, 512), (5, 3, 512))


def vgg16_conv_names() -> List[str]:
    return [f"conv{b}_{i}" for b, n, _ in VGG16_LAYOUT for i in range(1, n + 1)]


class VGG16Body(nn.Module):
    """conv1_1 .. conv5_3 with ReLU, max pooling after conv blocks 1-4 (stride 16 at conv5_3),
    shared by the backbone ``VGG16`` and ``VGG16Classifier``. ``ceil_mode`` rounds pooled sizes
    up as Caffe did."""

    def __init__(self, in_channels: int = 3, ceil_mode: bool = False):
        super().__init__()
        self.ceil_mode = ceil_mode
        # every convolution, those after a max pooling, each block's last (the block's output);
        # attributes, not module globals, because TorchScript reads attributes only
        self._conv_names = tuple(vgg16_conv_names())
        self._pool_before = tuple(f"conv{b}_1" for b, _, _ in VGG16_LAYOUT[1:])
        self._block_ends = tuple(f"conv{b}_{n}" for b, n, _ in VGG16_LAYOUT)
        for b, n, channels in VGG16_LAYOUT:
            for i in range(1, n + 1):
                self.add_module(f"conv{b}_{i}", nn.Conv2d(in_channels, channels, 3, padding=1))
                in_channels = channels
        msra_init_(self)

    def freeze(self, freeze_at: int = 0) -> "VGG16Body":
        """Freeze conv blocks 1..``freeze_at``."""
        if not 0 <= freeze_at <= 5:
            raise ValueError(f"VGG-16 freeze_at must be in 0..5 (conv blocks frozen); got {freeze_at}")
        for b, n, _ in VGG16_LAYOUT[:freeze_at]:
            for i in range(1, n + 1):
                for p in getattr(self, f"conv{b}_{i}").parameters():
                    p.requires_grad_(False)
        return self

    def conv_blocks(self, x: torch.Tensor, last: str = "conv5_3") -> Dict[str, torch.Tensor]:
        """The last convolution's output of each conv block up to the one ending in ``last``
        (``conv1_2`` .. ``conv5_3``).

        The loop runs over ``named_children()`` (TorchScript unrolls it; it cannot look a layer
        up by a computed name)."""
        outputs: Dict[str, torch.Tensor] = {}
        running = True
        for name, module in self.named_children():
            if running and name in self._conv_names:
                if name in self._pool_before:
                    x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_mode)
                x = F.relu_(module(x))
                if name in self._block_ends:
                    outputs[name] = x
                running = name != last
        return outputs


class VGG16(VGG16Body):
    """The backbone: ``forward`` returns ``{name: feature map}`` for each of ``out_features``,
    the last convolution of any block (``conv1_2`` .. ``conv5_3``; default ``conv5_3``, no pool5).
    ``freeze_at=k`` freezes conv blocks 1..k (the Faster R-CNN recipe fine-tunes conv3_1 and
    up: ``freeze_at=2``).
    """

    def __init__(self, out_features: Optional[Sequence[str]] = None, freeze_at: int = 0,
                 in_channels: int = 3, ceil_mode: bool = False):
        block_ends = {f"conv{b}_{n}": (b, 2 ** (b - 1), c) for b, n, c in VGG16_LAYOUT}
        out_features = list(out_features or ["conv5_3"])
        bad = [f for f in out_features if f not in block_ends]
        if bad:
            raise ValueError(f"Unknown VGG-16 out feature(s) {bad}; valid choices: {list(block_ends)}")
        super().__init__(in_channels, ceil_mode)
        self._out_features = out_features
        self._out_feature_strides = {f: block_ends[f][1] for f in out_features}
        self._out_feature_channels = {f: block_ends[f][2] for f in out_features}
        self._last_conv = max(out_features, key=lambda f: block_ends[f][0])
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        outputs = self.conv_blocks(x, self._last_conv)
        return {f: outputs[f] for f in self._out_features}

    def output_shape(self) -> Dict[str, FeatureShape]:
        """Channels and stride of each output."""
        return {f: FeatureShape(self._out_feature_channels[f], self._out_feature_strides[f])
                for f in self._out_features}


class VGGFullyConnected(nn.Module):
    """fc6 and fc7 (4096-d, ReLU, dropout 0.5) on a 512x7x7 input: VGG's classifier trunk and
    the Faster R-CNN VGG-16 box head share it."""

    def __init__(self, in_features: int = 512 * 7 * 7, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.dropout = dropout
        for fc in (self.fc6, self.fc7):
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.dropout(F.relu_(self.fc6(x)), self.dropout, self.training)
        return F.dropout(F.relu_(self.fc7(x)), self.dropout, self.training)


class VGG16Classifier(VGG16Body):
    """VGG-16 conv layers, pool5, adaptive 7x7 pooling (so any input size works), fc6, fc7, fc8;
    returns logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, ceil_mode: bool = False):
        super().__init__(ceil_mode=ceil_mode)
        self.num_classes = num_classes
        self.head = VGGFullyConnected(dropout=dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_blocks(x)["conv5_3"]
        x = F.max_pool2d(x, 2, 2, ceil_mode=self.ceil_mode)
        x = F.adaptive_avg_pool2d(x, 7)
        return self.fc8(self.head(x))

