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
* A name of the weights registry (``MODEL.WEIGHTS resnet50.torchvision``): its file in the
  weights folder, once its sha256 is verified (``resnet_backbone.weights_registry``).

Unlike detectron2's, it behaves as the package's own checkpointer
(``resnet_backbone.checkpoint.SafeCheckpointerMixin``): every file goes through
``load_checkpoint_file`` (no plain ``pickle.load``: a crafted ``.pkl`` is refused before anything
runs), saving is atomic, and ``--resume`` continues from the newest readable checkpoint.
Missing / unexpected keys are reported in the package's one table (``incompatible_keys_table``),
and a checkpoint that matches no parameter raises instead of silently training from scratch.
"""
import os
from typing import Any, Dict, List, Optional, Sequence

from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoint import (CheckpointError, SafeCheckpointerMixin, incompatible_keys_table,
                          load_checkpoint_file, state_dict_from_checkpoint)
from ..convert import to_paper
from ..weights_registry import is_weights_name, resolve_weights
from .compat import split_checkpoint_query

#: Prefix of a VGG-16 classifier's fc6/fc7 in our naming; stripped so they match ``box_head.fc6``.
_VGG_FC_PREFIX = "head."


def _classifier_to_detection_names(state_dict: Dict[str, Any], num_model_keys: int) -> Dict[str, Any]:
    """Rename an ImageNet classifier (ours, torchvision ResNet / VGG-16) to the paper's names,
    with VGG's ``head.fc6``/``head.fc7`` as plain ``fc6``/``fc7`` for suffix matching."""
    try:
        state_dict, _ = to_paper(state_dict_from_checkpoint(state_dict)[0])
    except ValueError as e:
        raise CheckpointError(f"The checkpoint matches none of the model's {num_model_keys} "
                              f"weights and is not a known classifier format: {e}") from e
    return {k[len(_VGG_FC_PREFIX):] if k.startswith(_VGG_FC_PREFIX + "fc") else k: v
            for k, v in state_dict.items()}


def check_weights_file(path: str, key: str = "MODEL.WEIGHTS") -> None:
    """A local weights file (``key``'s value; not a URL) must exist: else ``CheckpointError``
    naming it, where a relative path is read from, and what to do, before a job spends minutes
    on its data. A name of the weights registry must resolve (``resolve_weights``: the file is
    in the weights folder and has its sha256), else its error, prefixed with ``key``."""
    if not path or "://" in path or os.path.isfile(path.split("?", 1)[0]):
        return
    name = path.split("?", 1)[0]
    if is_weights_name(name):
        try:
            resolve_weights(name)
        except (ValueError, FileNotFoundError) as e:
            raise type(e)(f"{key} {name}: {e}") from None
        return
    where = "" if os.path.isabs(path) else f" (a relative path: read from {os.getcwd()})"
    raise CheckpointError(f"{key} {path} does not exist{where}. Download the weights (the "
                          f"config's header says where) and give their path: {key} "
                          f"/path/to/file")


class PaperDetectionCheckpointer(SafeCheckpointerMixin, DetectionCheckpointer):
    """A ``DetectionCheckpointer`` for the paper's networks (see the module docstring).

    ``path?matching_heuristics=True`` forces suffix matching, as detectron2 main allows (with
    v0.6 too: ``.compat.split_checkpoint_query``). After a load, ``last_load`` says what it loaded:
    ``{"path", "missing", "mismatched"}`` (the model's names the file did not fill; those of them
    the file has with another shape, as (name, model shape, file shape)), or None for nothing.
    """

    _force_matching = False
    last_load = None

    def load(self, path: str, *args, **kwargs):
        self.last_load = None
        path, self._force_matching = split_checkpoint_query(path)
        if is_weights_name(path):  # a named file of the weights folder, sha256 verified
            path = resolve_weights(path)
        self._path = path
        return super().load(path, *args, **kwargs)

    def load_read(self, path: str, checkpoint: Dict[str, Any], *args, **kwargs):
        """A resume's checkpoint, read by process 0 and broadcast (``SafeCheckpointerMixin``):
        detectron2's ``load``, which the other machines cannot run on a file they do not have,
        is bypassed; ``last_load`` is set as by ``load``."""
        self.last_load, self._force_matching, self._path = None, False, path
        return super().load_read(path, checkpoint, *args, **kwargs)

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
        return data if "model" in data else {"model": state_dict_from_checkpoint(data, filename)[0]}

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
        self.last_load = {"path": self._path,
                          "missing": sorted(not_loaded - {k for k in model_keys
                                                          if k.endswith("num_batches_tracked")}),
                          "mismatched": [(k, tuple(model), tuple(ckpt))
                                         for k, ckpt, model in incompatible.incorrect_shapes]}
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        """The package's one table: weights left at their initial values, checkpoint entries not
        used, shape mismatches (BN step counters hold no weights and are left out)."""
        mismatched = [(k, tuple(model), tuple(ckpt)) for k, ckpt, model in incompatible.incorrect_shapes]
        table = incompatible_keys_table(
            [k for k in incompatible.missing_keys if k not in {m for m, *_ in mismatched}],
            [k for k in incompatible.unexpected_keys if not k.endswith("num_batches_tracked")],
            mismatched)
        if table:
            self.logger.warning("Checkpoint and model differ (missing: left at their initial "
                                "values; unexpected: ignored):\n" + table)


#: The checkpoint entry of ``DatasetClasses``.
CLASSES_KEY = "classes"


class DatasetClasses:
    """The names (and dataset category ids) of the classes a detector is trained on, saved in
    every checkpoint of the run under ``CLASSES_KEY`` (a detectron2 checkpointable): a trained
    detector then says what its class indices mean, so a predictor or an export needs no
    registered dataset. Loading (``--resume``) keeps the run's own: its datasets decide."""

    def __init__(self, names: Sequence[str], category_ids: Sequence[int] = ()):
        self.names, self.category_ids = list(names), list(category_ids)

    def state_dict(self) -> Dict[str, List]:
        return {"thing_classes": self.names, "category_ids": self.category_ids}

    def load_state_dict(self, state: Dict) -> None:
        pass

    @classmethod
    def of_datasets(cls, names: Sequence[str]) -> Optional["DatasetClasses"]:
        """The classes of the registered datasets ``names`` (their ``thing_classes`` and
        ``thing_dataset_id_to_contiguous_id``); None when they have none or disagree."""
        from detectron2.data import MetadataCatalog
        found = []
        for name in names:
            meta = MetadataCatalog.get(name)
            classes = list(meta.get("thing_classes", None) or [])
            id_map = meta.get("thing_dataset_id_to_contiguous_id", None) or {}
            ids = [i for i, _ in sorted(id_map.items(), key=lambda kv: kv[1])]
            found.append((classes, ids if len(ids) == len(classes) else []))
        if not found or not found[0][0] or any(f != found[0] for f in found):
            return None
        return cls(*found[0])


def checkpoint_classes(checkpoint: Optional[Dict]) -> Optional[DatasetClasses]:
    """The ``DatasetClasses`` a loaded checkpoint (what ``Checkpointer.load`` returns) holds."""
    entry = (checkpoint or {}).get(CLASSES_KEY)
    if not isinstance(entry, dict) or not entry.get("thing_classes"):
        return None
    return DatasetClasses(entry["thing_classes"], entry.get("category_ids") or ())
