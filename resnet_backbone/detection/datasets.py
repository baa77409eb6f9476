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
* ``numpy_compat()``: re-exported from ``.compat`` (detectron2 v0.6's ``np.str``), where it lives.
* ``validate_datasets``: the checks of ``.validation`` on every dataset of a job, once, before
  it starts, in one table per dataset; repeated image / annotation ids and more categories
  than ``MODEL.ROI_HEADS.NUM_CLASSES`` are an error; missing or unreadable images are an error
  (a training set's are left out with ``DATALOADER.SKIP_CORRUPT True``); bad annotations of a
  training set are skipped (or, ``DATASETS.STRICT``, an error).

Several machines need no shared filesystem: a COCO-format dataset is checked once, by process
0, and its verdict broadcast (every machine must hold the same json, compared by sha256); each
machine writes the cleaned copy of a training set's json in its own OUTPUT_DIR/datasets. A VOC
folder is checked by the first process of each machine (its verdicts cached for the others).
"""
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from ..distributed import (computed_once, first_then_others, get_local_rank,
                           machines_that_differ, synchronize)
from ..weights_registry import file_sha256
from .compat import numpy_compat  # noqa: F401  (used here; users and tests import it from here)
from .validation import (DatasetError, Problem, categories_problem, check_coco, check_records, count,
                         image_cache_file, problems_table, write_cleaned_coco)
from .voc_submission import EVALUATOR_TYPE as VOC_SUBMISSION


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


logger = logging.getLogger("detectron2.resnet_backbone")

#: Files named in a message about missing or unreadable images (the table lists more).
SHOWN = 3


def _named(bad: Dict[object, str], reasons: Dict[str, str]) -> str:
    files = list(bad.values())
    text = ", ".join(f"{f} ({reasons.get(os.path.abspath(f), '?')})" for f in files[:SHOWN])
    return text + (f" and {len(files) - SHOWN} more" if len(files) > SHOWN else "")


def _decide(name: str, problems: Sequence[Problem], *, fatal: List[str], train: bool,
            bad_images: Dict[object, str], reasons: Dict[str, str], total: int, strict: bool,
            skip_corrupt: bool, unannotated: int, source: str) -> bool:
    """Log the one table of ``name``'s problems, then raise ``DatasetError`` (one line) or say
    what is skipped. True when the training set ``name`` must be cleaned."""
    if unannotated:
        logger.info(f"Dataset {name!r}: {unannotated} images without annotations (detectron2 "
                    "leaves them out of training with DATALOADER.FILTER_EMPTY_ANNOTATIONS).")
    if not problems:
        return False
    logger.warning(f"Dataset {name!r}: {len(problems)} problems:\n" + problems_table(problems))
    errors = list(fatal)
    are = "is" if len(bad_images) == 1 else "are"
    if bad_images and not train:
        errors.append(f"{len(bad_images)} of the {total} images of test set {name!r} {are} "
                      f"missing or unreadable: {_named(bad_images, reasons)}; a test set is never "
                      f"changed: restore the files, or remove those images from {source}")
    elif bad_images and not skip_corrupt:
        errors.append(f"{len(bad_images)} of the {total} images of training set {name!r} {are} "
                      f"missing or unreadable: {_named(bad_images, reasons)}; restore them, or "
                      "set DATALOADER.SKIP_CORRUPT True to train without them")
    annotations = [p for p in problems if p.kind == "annotation"]
    if strict and annotations and not errors:
        errors.append(f"dataset {name!r} has {len(problems)} problems (the table above); fix "
                      "them, or set DATASETS.STRICT False to skip its bad annotations")
    if errors:
        head = "" if errors[0].startswith("dataset ") else f"dataset {name!r} (the table above): "
        raise DatasetError(head + "; ".join(errors))
    if train and bad_images:
        logger.warning(f"Dataset {name!r}: {len(bad_images)} of its {total} images left out of "
                       f"training, missing or unreadable (DATALOADER.SKIP_CORRUPT True), with "
                       f"their annotations: {_named(bad_images, reasons)}.")
    if train and annotations:
        logger.warning(f"Dataset {name!r}: {count(len(annotations), 'bad annotation')} skipped "
                       "(DATASETS.STRICT True makes them an error).")
    return train and bool(annotations or bad_images)


def _reregister_coco(name: str, json_file: str) -> None:
    """``name`` again, reading ``json_file`` (a cleaned copy) with the same metadata."""
    meta = MetadataCatalog.get(name)
    kept = {k: v for k, v in meta.as_dict().items()
            if k not in ("name", "json_file", "image_root", "evaluator_type")}
    image_root = meta.image_root
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    register_coco_instances(name, kept, json_file, image_root)


def validate_datasets(train_names: Sequence[str], test_names: Sequence[str], *, strict: bool,
                      output_dir: str, num_classes: Optional[int] = None,
                      skip_corrupt: bool = False, verify_images: bool = True) -> None:
    """Check every dataset of a job once (``.validation``) and log one table of its problems;
    then a ``DatasetError`` (one line), or training sets train without their bad annotations
    (``strict`` False) and without their missing or unreadable images (``skip_corrupt``), a
    COCO one from a cleaned copy in ``output_dir/datasets``. ``num_classes``: the model's
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (None: not checked)."""
    for name in dict.fromkeys([*train_names, *test_names]):
        meta, kind, train = MetadataCatalog.get(name), evaluator_type(name), name in train_names
        if kind == "coco":
            cache = image_cache_file(meta.image_root)
            differ = machines_that_differ(lambda: file_sha256(meta.json_file))
            if differ:
                raise DatasetError(f"dataset {name!r}: {meta.json_file} on machine "
                                   f"{', '.join(map(str, differ))} is not the file machine 0 has: "
                                   "give every machine the same copy of the dataset")
            found = computed_once(lambda: check_coco(  # process 0 checks; the verdict is broadcast
                meta.json_file, meta.image_root, num_classes=num_classes, cache_file=cache,
                verify_images=verify_images))
            reasons = found.image_check.bad if found.image_check else {}
            clean = _decide(name, found.problems, fatal=found.fatal, train=train,
                            bad_images=found.bad_images, reasons=reasons, total=found.images,
                            strict=strict, skip_corrupt=skip_corrupt,
                            unannotated=found.unannotated, source=meta.json_file)
            if clean:  # each machine's copy in its own OUTPUT_DIR (no shared folder needed)
                cleaned = os.path.join(output_dir, "datasets", f"{name}.json")
                if get_local_rank() == 0:
                    write_cleaned_coco(meta.json_file, found.bad_annotations, cleaned,
                                       bad_images=found.bad_images)
                synchronize()
                _reregister_coco(name, cleaned)
        elif kind in ("pascal_voc", VOC_SUBMISSION):
            try:
                with numpy_compat():
                    records = DatasetCatalog.get(name)
            except Exception as e:  # a file the loader cannot parse, a class it does not know
                raise DatasetError(f"dataset {name!r} cannot be loaded from "
                                   f"{getattr(meta, 'dirname', '?')}: {type(e).__name__}: {e}") from None
            if not records:
                raise DatasetError(f"dataset {name!r} is empty: {getattr(meta, 'dirname', '?')} "
                                   f"lists no images for split {getattr(meta, 'split', '?')!r}")
            classes = list(meta.thing_classes)
            folder = getattr(meta, "dirname", os.path.dirname(records[0]["file_name"]))
            problems, cleaned, unannotated = first_then_others(lambda: check_records(
                records, len(classes), cache_file=image_cache_file(folder),
                verify_images=verify_images))
            too_many = categories_problem(folder, classes, num_classes)
            problems = ([too_many] if too_many else []) + problems
            reasons = {os.path.abspath(p.file): p.what for p in problems if p.kind == "image"}
            bad_images = {r.get("image_id"): r["file_name"] for r in records
                          if os.path.abspath(r["file_name"]) in reasons}
            clean = _decide(name, problems, fatal=[f"{folder} has {too_many.what}"]
                            if too_many else [], train=train, bad_images=bad_images,
                            reasons=reasons, total=len(records), strict=strict,
                            skip_corrupt=skip_corrupt,
                            unannotated=unannotated if kind == "pascal_voc" else 0,
                            source=os.path.join(folder, "ImageSets", "Main",
                                                f"{getattr(meta, 'split', '?')}.txt"))
            if clean:
                kept = [r for r in cleaned if os.path.abspath(r["file_name"]) not in reasons]
                DatasetCatalog.remove(name)
                DatasetCatalog.register(name, lambda kept=kept: kept)
