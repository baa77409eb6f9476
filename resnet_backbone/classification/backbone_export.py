"""A trained classifier of ``tools/train_cls.py`` -> a backbone checkpoint for ``tools/train_det.py``
(``export_backbone``), or the classifier itself rebuilt for deployment (``classifier_from_checkpoint``,
which ``resnet-export-model`` writes to ONNX / TorchScript / ``torch.export``).

Our parameter names already are detectron2's ResNet names (``stem.conv1.*``, ``res2.0.conv1.*``),
so the export drops the classifier (``linear.*``) and writes ``{"model": state_dict,
"matching_heuristics": True, "meta": {...}}``: detectron2's checkpointer then matches ``res5.*``
to ``backbone.res5.*`` / ``roi_heads.res5.*`` by suffix. ``meta`` records what the detector must
use (``resnet_backbone.detection`` applies it): the depth, shortcut option, stride placement,
norm, input format and the RGB pixel mean and std (0..255), and how many batches the BN
statistics saw (a short pre-training gives statistics that FrozenBN fine-tuning cannot use);
``resnet_backbone.checkpoint_meta.backbone_meta`` (core: the detection layer reads it too) makes it.

A weight export: the graph exports (ONNX, TorchScript) are ``resnet_backbone.export`` and
``resnet_backbone.detection.export``.
"""
from typing import Dict, Mapping, Optional, Tuple

from fvcore.common.config import CfgNode as CN
from torch import nn

from ..checkpoint import (load_checkpoint_file, load_state_dict_checked, save_checkpoint_atomic,
                          state_dict_from_checkpoint)
from ..checkpoint_meta import backbone_meta  # in the core; still importable from here
from .config import cfg_from_checkpoint
from .engine import build_model


def export_backbone(weights: str, out: str) -> Dict:
    """Write the backbone of the classifier checkpoint ``weights`` to ``out``; returns ``meta``."""
    state = load_checkpoint_file(weights)
    meta = backbone_meta(state)
    sd = {k: v for k, v in state["model"].items() if not k.startswith("linear.")}
    save_checkpoint_atomic({"model": sd, "matching_heuristics": True,
                            "__author__": "resnet_backbone", "meta": meta}, out)
    return meta


def classifier_from_checkpoint(weights: str, state: Optional[Mapping] = None
                               ) -> Tuple[nn.Module, CN]:
    """The trained network of a ``tools/train_cls.py`` checkpoint (built from the config it
    records, every weight loaded strictly), in eval mode, and that config. ``state``: the file
    already loaded. The model takes the mean-subtracted (``INPUT.MEAN``) input the trainer fed
    it, at ``trained_image_size(cfg)``."""
    state = load_checkpoint_file(weights) if state is None else state
    cfg = cfg_from_checkpoint(state)
    model = build_model(cfg)
    load_state_dict_checked(model, state_dict_from_checkpoint(state, weights)[0], source=weights)
    return model.eval(), cfg
