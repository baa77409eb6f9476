"""timm's ``features_only`` interface: ``create_model(name, features_only=True, out_indices=...)``
returns the network's stage maps as a list, and ``model.feature_info`` says each map's channels,
reduction (stride) and module, as timm's ``FeatureInfo`` does (``channels()``, ``reduction()``,
``module_name()``), so code written for timm backbones takes these networks unchanged.

The indices: ResNets (ImageNet and CIFAR, residual and plain) 0 = the stem (stride 4 on
ImageNet: its max-pool included, as detectron2's ``stem``; stride 1 on CIFAR), 1.. = the stages
``res2``, ``res3``, ... (stride 4, 8, 16, 32 on ImageNet); VGG-16 0..4 = the last convolution of
each block, ``conv1_2`` .. ``conv5_3`` (stride 1 .. 16). Default: every index. The classifier
head is dropped, as in timm.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from .resnet import ResNetClassifier, check_image_batch
from .vgg import VGG16_LAYOUT, VGG16Classifier


class FeatureInfo:
    """What each returned map is, in timm's ``FeatureInfo`` API."""

    def __init__(self, entries: List[Dict], out_indices: Sequence[int]):
        self.info, self.out_indices = entries, tuple(out_indices)

    def _get(self, key: str, idx: Optional[int] = None):
        values = [e[key] for e in self.info]
        return values if idx is None else values[idx]

    def channels(self, idx: Optional[int] = None):
        return self._get("num_chs", idx)

    def reduction(self, idx: Optional[int] = None):
        return self._get("reduction", idx)

    def module_name(self, idx: Optional[int] = None):
        return self._get("module", idx)

    def get_dicts(self) -> List[Dict]:
        return [dict(e) for e in self.info]

    def __len__(self) -> int:
        return len(self.info)


class FeatureListNet(nn.Module):
    """A ResNet or VGG-16 classifier without its head, returning the maps of ``out_indices`` as a
    list (see the module docstring)."""

    def __init__(self, model: nn.Module, out_indices: Optional[Sequence[int]] = None):
        super().__init__()
        if isinstance(model, ResNetClassifier):
            names = ["stem", *model.stage_names]
            available = [{"module": n, "num_chs": model._out_feature_channels[n],
                          "reduction": model._out_feature_strides[n]} for n in names]
            del model.linear  # the head, as timm drops it
        elif isinstance(model, VGG16Classifier):
            available = [{"module": f"conv{b}_{n}", "num_chs": c, "reduction": 2 ** (b - 1)}
                         for b, n, c in VGG16_LAYOUT]
            del model.head, model.fc8
        else:
            raise ValueError("features_only takes the paper's ResNets and VGG-16; got "
                             f"{type(model).__name__}")
        out_indices = list(range(len(available)) if out_indices is None else out_indices)
        bad = [i for i in out_indices if not (isinstance(i, int) and 0 <= i < len(available))]
        if bad or not out_indices or len(set(out_indices)) != len(out_indices):
            raise ValueError(f"out_indices {out_indices}: give distinct indices in "
                             f"0..{len(available) - 1} ({', '.join(e['module'] for e in available)})")
        self.body = model
        self.feature_info = FeatureInfo([available[i] for i in out_indices], out_indices)
        self._names = [available[i]["module"] for i in out_indices]
        self._last = max(self._names, key=[e["module"] for e in available].index)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if isinstance(self.body, VGG16Classifier):
            maps = self.body.conv_blocks(x, self._last)
        else:
            maps = self.body.run_stages(check_image_batch(x), self._names)[1]
        return [maps[n] for n in self._names]
