"""What a classifier checkpoint of ``tools/train_cls.py`` says about the backbone in it
(``backbone_meta``): the metadata both ``classification`` (``tools/export_backbone.py`` writes it
as the backbone file's ``meta``) and ``detection`` (``apply_weights_meta`` applies it to the
detector's config) need, so it lives in the core.

The checkpoint records the whole config it was trained with as YAML text (``state["cfg"]``, the
trainer's ``cfg.dump()``: every key of the classification config, defaults included), so the
core reads it with ``yaml`` and needs no classification defaults. Every ``train_cls`` checkpoint
has each key read here (all of them date from the first version of the config); one without
raises ``ValueError`` naming the key rather than guessing.
"""
from typing import Dict, Mapping

import yaml

from .models import model_spec

#: The config keys ``backbone_meta`` reads (dotted paths into the YAML dump).
META_KEYS = ("MODEL.NAME", "MODEL.SHORTCUT", "MODEL.STRIDE_IN_1X1", "MODEL.NORM",
             "INPUT.PIXEL_STD")


def _config_values(state: Mapping) -> Dict:
    """``META_KEYS`` -> value, from the YAML config dump of a ``train_cls`` checkpoint."""
    if not isinstance(state, Mapping) or "cfg" not in state:
        raise ValueError("the checkpoint has no 'cfg' entry; it was not written by "
                         "tools/train_cls.py")
    cfg = yaml.safe_load(state["cfg"])
    values = {}
    for key in META_KEYS:
        node = cfg
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ValueError(f"the checkpoint's config has no {key}; it was not written by "
                                 "tools/train_cls.py")
            node = node[part]
        values[key] = node
    return values


def backbone_meta(state: Mapping) -> Dict:
    """What a checkpoint of ``tools/train_cls.py`` (with its ``cfg`` and ``pixel_mean``) says
    about the backbone in it."""
    cfg = _config_values(state)
    spec = model_spec(cfg["MODEL.NAME"])
    if spec.family != "resnet":
        raise ValueError(f"{spec.name} is not a ResNet/plain net; only those export as backbones")
    counters = [int(v) for k, v in state["model"].items() if k.endswith("num_batches_tracked")]
    return {"model_name": spec.name, "depth": spec.depth, "cifar": spec.cifar,
            "residual": spec.residual,
            "shortcut": cfg["MODEL.SHORTCUT"] or spec.default_shortcut,
            "stride_in_1x1": bool(cfg["MODEL.STRIDE_IN_1X1"]), "norm": cfg["MODEL.NORM"],
            "input_format": "RGB", "pixel_mean": state["pixel_mean"].float().mean((1, 2)).tolist(),
            "pixel_std": list(cfg["INPUT.PIXEL_STD"]),
            "bn_batches": min(counters) if counters else None}
