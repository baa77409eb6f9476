"""``PaperDetectionCheckpointer``: detectron2's ``DetectionCheckpointer`` reading files safely and
mapping the weight files a user has onto the paper's backbones.

What it loads, into ``build_paper_resnet`` / ``PaperRes5ROIHeads`` / ``build_vgg16_backbone`` +
``VGG16BoxHead`` models:

* MSRA / Caffe2 ``R-50.pkl``, ``R-101.pkl`` (``{"blobs": ...}`` or a flat dict of caffe2 names):
  detectron2's caffe2 renaming and suffix matching (``res5.*`` -> ``roi_heads.res5.*``).
* detectron2 model-zoo ``.pkl`` / ``.pth`` checkpoints of its builtin ResNet: our parameter names
  are detectron2's, so they load name for name.
* ImageNet classifiers (``.pth``): ours (``tools/train_cls.py``) and torchvision ResNet / VGG-16,
  renamed by ``resnet_backbone.convert`` and suffix-matched; VGG-16 ``fc6``/``fc7`` go to the
  box head.
* Our own detection checkpoints (resume).

Unlike detectron2's, every file goes through ``resnet_backbone.checkpoint.load_checkpoint_file``
(no plain ``pickle.load``: a crafted ``.pkl`` is refused before anything runs), saving is atomic,
missing/unexpected keys are reported in one table, and a checkpoint that matches no parameter
raises instead of silently training from scratch.
"""
import os
from collections import defaultdict
from typing import Any, Dict, Iterable, List
from urllib.parse import parse_qs

from detectron2.checkpoint import DetectionCheckpointer
from tabulate import tabulate

from ..checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint_atomic
from ..convert import to_paper, unwrap_state_dict

#: Prefix of a VGG-16 classifier's fc6/fc7 in our naming; stripped so they match ``box_head.fc6``.
_VGG_FC_PREFIX = "head."


def group_keys(keys: Iterable[str]) -> List[str]:
    """``a.b.weight``, ``a.b.bias`` -> ``a.b.{bias,weight}``: one entry per module."""
    groups: Dict[str, List[str]] = defaultdict(list)
    for key in sorted(keys):
        module, _, leaf = key.rpartition(".")
        groups[module].append(leaf)
    return [f"{m}.{{{','.join(v)}}}" if len(v) > 1 else (f"{m}.{v[0]}" if m else v[0])
            for m, v in groups.items()]


def _classifier_to_detection_names(state_dict: Dict[str, Any], num_model_keys: int) -> Dict[str, Any]:
    """Rename an ImageNet classifier (ours, torchvision ResNet / VGG-16) to the paper's names,
    with VGG's ``head.fc6``/``head.fc7`` as plain ``fc6``/``fc7`` for suffix matching."""
    try:
        state_dict, _ = to_paper(unwrap_state_dict(state_dict)[0])
    except ValueError as e:
        raise CheckpointError(f"The checkpoint matches none of the model's {num_model_keys} "
                              f"weights and is not a known classifier format: {e}") from e
    return {k[len(_VGG_FC_PREFIX):] if k.startswith(_VGG_FC_PREFIX + "fc") else k: v
            for k, v in state_dict.items()}


class PaperDetectionCheckpointer(DetectionCheckpointer):
    """A ``DetectionCheckpointer`` for the paper's networks (see the module docstring).

    ``path?matching_heuristics=True`` forces suffix matching, as detectron2 main allows (v0.6
    does not; here it works with both).
    """

    _force_matching = False

    def load(self, path: str, *args, **kwargs):
        self._force_matching = False
        if path and "?" in path:
            path, query = path.split("?", 1)
            options = parse_qs(query)
            self._force_matching = options.pop("matching_heuristics", ["False"]) == ["True"]
            if options:
                raise ValueError(f"Unsupported query {sorted(options)} in checkpoint path; the only "
                                 "one is ?matching_heuristics=True")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        data = load_checkpoint_file(filename)
        if not isinstance(data, dict):
            raise CheckpointError(f"{filename} holds a {type(data).__name__}, not a dict of weights")
        if filename.endswith(".pkl"):
            if "model" in data and "__author__" in data:  # detectron2 model-zoo format
                self.logger.info(f"Reading a file from '{data['__author__']}'")
                return data
            blobs = data.get("blobs", data)  # Caffe2 / Detectron (MSRA ImageNet models: flat)
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
        return data if "model" in data else {"model": unwrap_state_dict(data)[0]}

    def _load_model(self, checkpoint: Dict[str, Any]):
        model_keys = set(self.model.state_dict())
        weights = checkpoint["model"]
        if self._force_matching:
            checkpoint["matching_heuristics"] = True
        elif not checkpoint.get("matching_heuristics") and not model_keys & set(weights):
            # Not this model's own names: an ImageNet classifier (ours or torchvision's).
            checkpoint["model"] = _classifier_to_detection_names(weights, len(model_keys))
            checkpoint["matching_heuristics"] = True
        incompatible = super()._load_model(checkpoint)
        not_loaded = set(incompatible.missing_keys) | {k for k, *_ in incompatible.incorrect_shapes}
        if not model_keys - not_loaded:
            sample = ", ".join(sorted(weights)[:5])
            raise CheckpointError(
                f"The checkpoint matches none of the model's {len(model_keys)} weights (its keys "
                f"start: {sample}). It is not a checkpoint of this network: check MODEL.WEIGHTS "
                f"and MODEL.BACKBONE.NAME / MODEL.PAPER_RESNET.DEPTH, or set MODEL.WEIGHTS \"\" "
                f"to train from scratch on purpose.")
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        """One table: weights left at their initial values, checkpoint entries not used."""
        rows = [("shape mismatch", f"{k}: checkpoint {tuple(a)}, model {tuple(b)}")
                for k, a, b in incompatible.incorrect_shapes]
        mismatched = {k for k, *_ in incompatible.incorrect_shapes}
        rows += [("missing (initialised)", k) for k in
                 group_keys(k for k in incompatible.missing_keys if k not in mismatched)]
        unexpected = [k for k in incompatible.unexpected_keys  # BN step counters: no weights
                      if not k.endswith("num_batches_tracked")]
        rows += [("unexpected (ignored)", k) for k in group_keys(unexpected)]
        if rows:
            self.logger.warning("Checkpoint and model differ:\n"
                                + tabulate(rows, headers=["", "keys"], tablefmt="pipe"))

    def save(self, name: str, **kwargs: Any) -> None:
        """As detectron2's, but written atomically (temporary file, fsync, rename)."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        save_checkpoint_atomic(data, save_file)
        self.tag_last_checkpoint(basename)
