"""Datasets for ``tools/train_det.py``: user COCO-format datasets, detectron2's builtin ones, and
checks that their files exist before a long job starts.

* ``register_coco_dataset(name, json_file, image_root)``: a COCO-format dataset given on the
  command line (``--dataset NAME JSON IMAGE_ROOT``), through detectron2's
  ``register_coco_instances``.
* detectron2 registers COCO / VOC (``coco_2017_train``, ``voc_2007_trainval``, ...) itself when
  ``detectron2.data`` is imported, under ``$DETECTRON2_DATASETS`` (default ``./datasets``).
  ``check_datasets`` turns "file not found" deep inside a data loader into one clear message.
* ``evaluator_type(name)``: "coco", "pascal_voc" or "pascal_voc_submission" (VOC 2012 test,
  ``voc_submission.py``), also for datasets registered without it
  (``register_pascal_voc`` on a user folder sets only dirname/year/split).
* ``numpy_compat()``: detectron2 v0.6 reads VOC image lists with ``np.str``, which NumPy 2
  removed; inside this context the old alias exists again (nothing changes on detectron2 main).
"""
import os
import warnings
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .voc_submission import EVALUATOR_TYPE as VOC_SUBMISSION

#: NumPy aliases detectron2 v0.6 uses (``np.str`` in ``load_voc_instances``) and NumPy 2 lacks.
_V06_NUMPY_ALIASES = {"str": str, "int": int, "float": float, "object": object}


def _numpy_has(name: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hasattr(np, name)


@contextmanager
def numpy_compat() -> Iterator[None]:
    """Provide ``np.str``/``np.int``/... (the builtins) while detectron2 v0.6 code runs."""
    added = [name for name in _V06_NUMPY_ALIASES if not _numpy_has(name)]
    for name in added:
        setattr(np, name, _V06_NUMPY_ALIASES[name])
    try:
        yield
    finally:
        for name in added:
            delattr(np, name)


def register_coco_dataset(name: str, json_file: str, image_root: str) -> str:
    """Register a COCO-format instances dataset (``--dataset NAME JSON IMAGE_ROOT``)."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"--dataset {name}: annotation file {json_file!r} does not exist; "
                                "give the COCO-format instances .json of this dataset.")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"--dataset {name}: image folder {image_root!r} does not exist; "
                                "give the folder the json's file_name entries are relative to.")
    if name in DatasetCatalog.list():
        meta = MetadataCatalog.get(name)
        if getattr(meta, "json_file", None) == json_file and \
                getattr(meta, "image_root", None) == image_root:
            return name  # same dataset registered again (e.g. a second call in one process)
        raise ValueError(f"--dataset {name}: the name is already registered (a detectron2 builtin "
                         "or an earlier --dataset); choose another name.")
    register_coco_instances(name, {}, json_file, image_root)
    return name


def register_datasets(specs: Iterable[Sequence[str]]) -> List[str]:
    """Register every ``(name, json_file, image_root)`` of the ``--dataset`` options."""
    return [register_coco_dataset(*spec) for spec in specs or ()]


def evaluator_type(name: str) -> str:
    """The evaluator a dataset needs: its metadata's ``evaluator_type``, else from its layout."""
    meta = MetadataCatalog.get(name)
    kind = getattr(meta, "evaluator_type", None)
    if kind:
        return kind
    if hasattr(meta, "json_file"):
        return "coco"
    if all(hasattr(meta, key) for key in ("dirname", "year", "split")):
        return "pascal_voc"
    raise ValueError(f"Dataset {name!r} has no evaluator_type and neither a COCO json_file nor "
                     "VOC dirname/year/split metadata: register it with --dataset (COCO format) "
                     "or detectron2's register_pascal_voc.")


def _files_of(name: str) -> List[str]:
    meta = MetadataCatalog.get(name)
    kind = evaluator_type(name)
    if kind in ("pascal_voc", VOC_SUBMISSION):
        listing = os.path.join(meta.dirname, "ImageSets", "Main", f"{meta.split}.txt")
        annotations = [os.path.join(meta.dirname, "Annotations")] if kind == "pascal_voc" else []
        return [listing, *annotations, os.path.join(meta.dirname, "JPEGImages")]
    return [p for p in (getattr(meta, "json_file", None), getattr(meta, "image_root", None)) if p]


def check_datasets(names: Iterable[str]) -> None:
    """Fail early, naming the fix, if a dataset is unknown or its files are missing."""
    registered = set(DatasetCatalog.list())
    for name in names:
        if name not in registered:
            raise ValueError(
                f"Unknown dataset {name!r} (from DATASETS.TRAIN / DATASETS.TEST). Register it with "
                f"--dataset {name} JSON IMAGE_ROOT (COCO format), or use a detectron2 builtin, "
                "e.g. "
                "coco_2017_train, coco_2017_val, voc_2007_trainval, voc_2012_trainval, "
                "voc_2007_test, voc_2012_test (images only: writes server result files).")
        missing = [p for p in _files_of(name) if not os.path.exists(p)]
        if missing:
            root = os.getenv("DETECTRON2_DATASETS", "datasets")
            raise FileNotFoundError(
                f"Dataset {name!r}: {', '.join(missing)} not found. Builtin datasets are read from "
                f"$DETECTRON2_DATASETS (now {root!r}; see detectron2's datasets/README.md for the "
                "layout); user datasets come from --dataset NAME JSON IMAGE_ROOT.")
