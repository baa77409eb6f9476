"""What a weights file says about classifying an image: the network, how it was trained to see
images (channel order, pixel mean and std), the test sizes and the class names.
``load_classifier`` reads them for the predictor (``classification.predictor``), so the
preprocessing always comes from the file, never from the user's memory.

Files it takes:

* a ``tools/train_cls.py`` checkpoint (``model_final.pth``, ``model_<iter>.pth``,
  ``model_best.pth``): the network of its config, the per-pixel mean image the run subtracted
  (``pixel_mean``), ``INPUT.PIXEL_STD``, RGB, the config's test sizes (``TEST.*``: the values its
  own evaluation used) and the training set's class names (``classes``; a checkpoint written
  before they were recorded gets its indices as names, with one warning);
* our (paper) layout with ``meta`` (``resnet-convert-weights`` of torchvision or MSRA caffe2
  weights), and the torchvision / MSRA files themselves (the same ``meta``, made on reading):
  ``meta``'s network, input format, mean and std; the test sizes of the paper's recipe
  (``configs/classification/Base-ImageNet.yaml``: shorter side 256, crop 224, scales
  {224, 256, 384, 480, 640}; a CIFAR net's ``Base-CIFAR10.yaml``); 1000 classes are named with
  torchvision's ImageNet categories (the torchvision and MSRA models share the sorted-synset
  class order).

Refused with one line saying what to do instead (``ValueError`` / ``CheckpointError``): a
backbone file (``resnet-export-backbone``, ``--to detectron2``: no classifier), paper-layout
weights without ``meta`` (their preprocessing is unknown, and is not guessed), a detector's
checkpoint, weights that do not fit the network the file names.
"""
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping

import torch
from fvcore.common.config import CfgNode as CN
from torch import nn

from ..checkpoint import (load_checkpoint_file, load_state_dict_checked, shape_mismatches,
                          state_dict_from_checkpoint)
from ..checkpoint_meta import SOURCE_PREPROCESSING, converted_meta
from ..convert import D2_C4_RES5, D2_PREFIXES, detect_format, to_paper
from ..models import model_spec
from ..recipes import get_config_file
from ..weights_registry import is_weights_name, resolve_weights, weights_entry
from .config import cfg_from_checkpoint, get_cls_cfg, trained_image_size
from .engine import build_model

logger = logging.getLogger("resnet_backbone.cls")

#: The recipe whose test sizes apply to weights that carry none (converted ones): ImageNet's
#: (Sec. 3.4), or CIFAR-10's for a CIFAR net.
RECIPE_FILES = {False: "classification/Base-ImageNet.yaml", True: "classification/Base-CIFAR10.yaml"}
#: The classifier layer's weight in each layout (ours: ResNet, VGG-16; torchvision: ResNet,
#: VGG-16; MSRA caffe2): a file with none of them is a backbone.
CLASSIFIER_WEIGHTS = ("linear.weight", "fc8.weight", "fc.weight", "classifier.6.weight", "fc1000_w")
CONVERT_AGAIN = ("convert the original file again, which records them: resnet-convert-weights "
                 "resnet50-0676ba61.pth {path} (torchvision) or resnet-convert-weights R-50.pkl "
                 "{path} (MSRA caffe2); or give the tools/train_cls.py checkpoint "
                 "(model_final.pth) the weights come from")


@dataclass
class ClassifierFile:
    """A classifier and everything needed to feed it an image."""

    model: nn.Module  # eval mode, on the CPU
    model_name: str
    classes: List[str]  # class index -> name
    input_format: str  # channel order of the network's input: "RGB" or "BGR"
    pixel_mean: torch.Tensor  # (3, h, w) mean image or (3, 1, 1), 0-255, input_format order
    pixel_std: List[float]  # 0-255 units, input_format order
    cfg: CN  # TEST.RESIZE / CROP_SIZE / SCALES / MULTI_SCALE_FLIP: the test sizes
    source: str  # what the file is, in words

    @property
    def resize(self) -> int:
        """Shorter side every image is resized to before the center / 10-crop views: the
        config's TEST.RESIZE, or for a run evaluated on its images as they are (TEST.RESIZE 0:
        CIFAR, synthetic) the size it trained on, which leaves such images unchanged."""
        return self.cfg.TEST.RESIZE or trained_image_size(self.cfg)


def imagenet_class_names() -> List[str]:
    """The 1000 ImageNet categories as torchvision names them (shipped with torchvision: no
    download), in the sorted-synset order of torchvision's and MSRA's models."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _index_names(count: int, path: str, why: str) -> List[str]:
    logger.warning("%s %s: its classes are named by their indices 0..%d", path, why, count - 1)
    return [str(i) for i in range(count)]


def _check_fits(model: nn.Module, state: Mapping, path: str, name: str, said_by: str) -> None:
    """One line (``ValueError``) when ``state`` is not the weights of ``model`` (``name``)."""
    model_state = model.state_dict()
    counter = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    missing = [k for k in model_state if k not in state and not counter(k)]
    unexpected = [k for k in state if k not in model_state and not counter(k)]
    mismatched = shape_mismatches(model_state, state)
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if mismatched:
        key, ours, theirs = mismatched[0]
        parts.append(f"{len(mismatched)} of other shapes (e.g. {key}: {list(ours)} in {name}, "
                     f"{list(theirs)} in the file)")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} not in {name} (e.g. {unexpected[0]})")
    raise ValueError(f"{path}: the weights do not fit {name}, the network its {said_by} names: "
                     f"{'; '.join(parts)}. The file holds another network's weights; give the "
                     "file its own run or conversion wrote")


def _from_train_cls(state: Mapping, path: str) -> ClassifierFile:
    cfg = cfg_from_checkpoint(state)
    if "pixel_mean" not in state:
        raise ValueError(f"{path} has a config but no 'pixel_mean': it is no tools/train_cls.py "
                         "checkpoint (model_final.pth, model_<iter>.pth, model_best.pth)")
    model = build_model(cfg)
    weights, _ = state_dict_from_checkpoint(state, path)
    _check_fits(model, weights, path, cfg.MODEL.NAME, "config (MODEL.NAME)")
    load_state_dict_checked(model, weights, source=path)
    classes = state.get("classes")
    if not (isinstance(classes, (list, tuple)) and len(classes) == cfg.MODEL.NUM_CLASSES):
        classes = _index_names(cfg.MODEL.NUM_CLASSES, path, "records no class names (a "
                               "checkpoint written before tools/train_cls.py saved them)")
    mean = torch.as_tensor(state["pixel_mean"]).float()
    return ClassifierFile(model.eval(), cfg.MODEL.NAME, [str(c) for c in classes], "RGB",
                          mean if mean.dim() == 3 else mean.view(3, 1, 1),
                          [float(s) for s in cfg.INPUT.PIXEL_STD], cfg,
                          f"tools/train_cls.py checkpoint of {cfg.MODEL.NAME} on {cfg.DATASETS.NAME}")


def _from_meta(weights: Dict, meta: Mapping, path: str) -> ClassifierFile:
    missing = [k for k in ("model_name", "input_format", "pixel_mean", "pixel_std") if k not in meta]
    if missing:
        raise ValueError(f"{path}: its meta lacks {', '.join(missing)}, so how the weights see "
                         f"images is unknown; " + CONVERT_AGAIN.format(path=path))
    if meta["input_format"] not in ("RGB", "BGR"):
        raise ValueError(f"{path}: meta input_format {meta['input_format']!r} is neither RGB nor BGR")
    spec = model_spec(meta["model_name"])
    head = next(weights[k] for k in CLASSIFIER_WEIGHTS if k in weights)
    cfg = get_cls_cfg()
    cfg.merge_from_file(get_config_file(RECIPE_FILES[bool(spec.cifar)]))
    cfg.MODEL.NAME, cfg.MODEL.NUM_CLASSES = spec.name, int(head.shape[0])
    cfg.MODEL.SHORTCUT = (meta.get("shortcut") or "") if spec.residual else ""
    cfg.MODEL.STRIDE_IN_1X1 = bool(meta.get("stride_in_1x1", True))
    cfg.MODEL.NORM = meta.get("norm") or "BN"
    model = build_model(cfg)
    _check_fits(model, weights, path, spec.name, "meta (model_name)")
    load_state_dict_checked(model, weights, source=path)
    count, source = cfg.MODEL.NUM_CLASSES, meta.get("source_format")
    if isinstance(meta.get("classes"), (list, tuple)) and len(meta["classes"]) == count:
        classes = [str(c) for c in meta["classes"]]
    elif count == 1000 and source in SOURCE_PREPROCESSING:
        classes = imagenet_class_names()
    else:
        classes = _index_names(count, path, "records no class names")
    mean = torch.tensor([float(m) for m in meta["pixel_mean"]]).view(3, 1, 1)
    what = f"converted from {source}" if source else "with meta"
    return ClassifierFile(model.eval(), spec.name, classes, meta["input_format"], mean,
                          [float(s) for s in meta["pixel_std"]], cfg, f"{spec.name} weights {what}")


def load_classifier(path: str) -> ClassifierFile:
    """The classifier in the file ``path`` (kinds in the module docstring), on the CPU."""
    path = os.fspath(path)
    if is_weights_name(path):  # a named file of the weights folder, sha256 verified
        entry, file = weights_entry(path), resolve_weights(path)
        paper, found = to_paper(state_dict_from_checkpoint(load_checkpoint_file(file), file)[0],
                                entry.format)
        # the entry's own preprocessing and options win over what the layout implies
        return _from_meta(paper, {**converted_meta(paper, found), **entry.meta()}, file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--weights {path}: no such file")
    state = load_checkpoint_file(path)
    if isinstance(state, Mapping) and "cfg" in state:
        return _from_train_cls(state, path)
    weights, _ = state_dict_from_checkpoint(state, path)
    if any(k.startswith((*D2_PREFIXES, D2_C4_RES5)) for k in weights):
        raise ValueError(f"{path} is a detector's checkpoint: it has no image classifier "
                         "(resnet-predict-det predicts with it)")
    if not any(k in weights for k in CLASSIFIER_WEIGHTS):
        raise ValueError(f"{path}: a backbone file has no classifier; its last layer (linear / "
                         "fc) was dropped (resnet-export-backbone, resnet-convert-weights --to "
                         "detectron2), so it cannot classify images: give the file it was made "
                         "from (the tools/train_cls.py model_final.pth, or the ImageNet "
                         "classifier converted by resnet-convert-weights)")
    meta = state.get("meta") if isinstance(state, Mapping) else None
    if isinstance(meta, Mapping):
        return _from_meta(weights, meta, path)
    found = detect_format(weights)
    if found not in SOURCE_PREPROCESSING:
        raise ValueError(f"{path}: weights in our (paper) layout that do not record how they see "
                         "images (channel order, pixel mean and std; resnet-convert-weights "
                         "writes them since it records them, and not for a source that does "
                         "not say): " + CONVERT_AGAIN.format(path=path))
    paper, found = to_paper(weights, found)
    return _from_meta(paper, converted_meta(paper, found), path)
