"""What a classifier checkpoint of ``tools/train_cls.py`` says about the backbone in it
(``backbone_meta``): the metadata both ``classification`` (``tools/export_backbone.py`` writes it
as the backbone file's ``meta``) and ``detection`` (``apply_weights_meta`` applies it to the
detector's config) need, so it lives in the core.

The checkpoint records the whole config it was trained with as YAML text (``state["cfg"]``, the
trainer's ``cfg.dump()``: every key of the classification config, defaults included), so the
core reads it with ``yaml`` and needs no classification defaults. Every ``train_cls`` checkpoint
has each key read here (all of them date from the first version of the config); one without
raises ``ValueError`` naming the key rather than guessing.

Weights converted from torchvision or the MSRA caffe2 models (``resnet-convert-weights``) carry
the same ``meta`` (``converted_meta``), made from what their source layout implies: the
preprocessing those networks were trained with (``SOURCE_PREPROCESSING``, the one table of it),
the stride placement, and the network, inferred from the parameter names (``model_name_of``).
"""
import re
from typing import Dict, Mapping

import yaml

from .models import model_spec
from .models.resnet import IMAGENET_DEPTHS
from .weights_registry import MSRA_MEAN_BGR, TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB, UNIT_STD

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


# ------------------------------------------------------------------ weights converted from others

#: How the ImageNet weights users convert (``resnet-convert-weights``) were trained to see
#: images, by source layout (``resnet_backbone.convert.detect_format``): the channel order the
#: first convolution takes, and the mean and std subtracted / divided per channel, in 0-255
#: units and in that channel order. The values of detectron2's configs, defined once in the
#: named-weights registry (``weights_registry``): torchvision's ``Normalize(mean=[0.485, 0.456,
#: 0.406], std=[0.229, 0.224, 0.225])`` times 255, RGB; the MSRA caffe2 models (``R-50.pkl``):
#: the BGR mean, no division. A layout implies them: a file in torchvision's layout holding
#: weights trained otherwise (a Caffe model renamed to torchvision's names) is not told apart.
SOURCE_PREPROCESSING: Dict[str, Dict] = {
    "torchvision_resnet": {"input_format": "RGB", "pixel_mean": list(TORCHVISION_MEAN_RGB),
                           "pixel_std": list(TORCHVISION_STD_RGB)},
    "torchvision_vgg16": {"input_format": "RGB", "pixel_mean": list(TORCHVISION_MEAN_RGB),
                          "pixel_std": list(TORCHVISION_STD_RGB)},
    "caffe2_resnet": {"input_format": "BGR", "pixel_mean": list(MSRA_MEAN_BGR),
                      "pixel_std": list(UNIT_STD)},
}
#: Where each source's bottleneck puts its stride: torchvision in the 3x3 convolution ("v1.5"),
#: the MSRA models in the first 1x1 (the paper's placement).
SOURCE_STRIDE_IN_1X1 = {"torchvision_resnet": False, "caffe2_resnet": True}

_BLOCK_KEY = re.compile(r"^res([2-5])\.(\d+)\.")


def model_name_of(state_dict: Mapping) -> str:
    """The registered ImageNet network whose parameter names (ours) ``state_dict`` has: VGG-16,
    or the ResNet of Table 1 with these blocks per stage, basic or bottleneck. ``ValueError``
    for any other (a CIFAR net, a detector's backbone without stages)."""
    if "conv1_1.weight" in state_dict:
        return "vgg16"
    blocks: Dict[int, int] = {}
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
    counts = tuple(blocks.get(stage, 0) for stage in (2, 3, 4, 5))
    kind = "bottleneck" if any(".conv3." in k for k in state_dict) else "basic"
    for depth, plan in IMAGENET_DEPTHS.items():
        if plan == (kind, counts):
            return f"resnet{depth}"
    raise ValueError(f"the weights are no ImageNet network of the paper: {kind} blocks per stage "
                     f"res2..res5 {list(counts)}; Table 1's are "
                     + ", ".join(f"ResNet-{d} {k} {list(c)}" for d, (k, c) in IMAGENET_DEPTHS.items()))


def converted_meta(state_dict: Mapping, source_format: str) -> Dict:
    """The ``meta`` of ImageNet weights converted from ``source_format`` (a key of
    ``SOURCE_PREPROCESSING``) to our names (``state_dict``): ``backbone_meta``'s keys (so the
    detection layer applies them as it does an exported backbone's) plus ``num_classes`` and
    ``source_format``. The network is inferred from the parameter names (torchvision and MSRA
    publish option-B ResNets with BN, and VGG-16)."""
    if source_format not in SOURCE_PREPROCESSING:
        raise ValueError(f"no known preprocessing for {source_format!r} weights; known: "
                         f"{', '.join(SOURCE_PREPROCESSING)}")
    spec = model_spec(model_name_of(state_dict))
    head = state_dict.get("linear.weight", state_dict.get("fc8.weight"))
    meta = {"model_name": spec.name, "depth": spec.depth, "cifar": False,
            "residual": spec.residual, "norm": "BN", "bn_batches": None,
            **{k: list(v) if isinstance(v, list) else v
               for k, v in SOURCE_PREPROCESSING[source_format].items()},
            "num_classes": None if head is None else int(head.shape[0]),
            "source_format": source_format}
    if spec.family == "resnet":
        meta.update(shortcut="B", stride_in_1x1=SOURCE_STRIDE_IN_1X1[source_format])
    else:
        meta["norm"] = None  # VGG-16 has no norm layers
    return meta
