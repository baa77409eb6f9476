"""Dataset checks before a detection job starts: a report, not a traceback hours later.

Every dataset a job trains or tests on is checked once, whatever registered it (``--dataset``,
detectron2's builtin COCO / VOC, ``register_pascal_voc``):

* a COCO json must parse (an unreadable or truncated file is named), and hold non-empty
  ``images``, ``annotations`` and ``categories`` (an empty one names the file and the key);
* each image file exists;
* each box has a positive width and height and overlaps its image;
* each category is declared (COCO ``categories``; VOC: the dataset's class names);
* images without annotations are counted (detectron2 drops them from training).

Problems are listed in one table (file, image id, annotation id, what is wrong; the first
``MAX_ROWS``). By default the bad annotations of a training set are skipped (it then trains on
a cleaned copy of the COCO json, or on the filtered VOC records) with a warning naming the
count; ``DATASETS.STRICT True`` turns any problem into an error. Test sets are never changed:
their problems are reported (or, strict, an error).
"""
import json
import logging
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tabulate import tabulate

logger = logging.getLogger("detectron2.resnet_backbone")

#: Rows of the problem table shown (the count says how many more).
MAX_ROWS = 20


class DatasetError(ValueError):
    """A dataset cannot be used as it is (unreadable, empty, or bad with DATASETS.STRICT)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset; ``annotation`` is None for an image-level problem."""

    file: str
    image_id: object
    annotation: Optional[object]
    what: str


def problems_table(problems: Sequence[Problem], max_rows: int = MAX_ROWS) -> str:
    rows = [(p.file, p.image_id, "-" if p.annotation is None else p.annotation, p.what)
            for p in problems[:max_rows]]
    table = tabulate(rows, headers=["file", "image id", "annotation id", "problem"], tablefmt="pipe")
    more = len(problems) - max_rows
    return table + (f"\n... and {more} more" if more > 0 else "")


def box_problem(x0: float, y0: float, x1: float, y1: float, width: Optional[int],
                height: Optional[int]) -> Optional[str]:
    """What is wrong with an XYXY box in a ``width`` x ``height`` image, or None."""
    if not x1 > x0 or not y1 > y0:
        return f"box width {x1 - x0:g} / height {y1 - y0:g} not positive"
    if width and height and (x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return f"box [{x0:g}, {y0:g}, {x1:g}, {y1:g}] lies outside its {width}x{height} image"
    return None


# ------------------------------------------------------------------------------- COCO json

def read_coco_json(json_file: str) -> Dict:
    """The parsed file, or ``DatasetError`` naming it: unreadable, not JSON (e.g. truncated),
    not a COCO instances file, or empty."""
    try:
        with open(json_file) as f:
            data = json.load(f)
    except OSError as e:
        raise DatasetError(f"cannot read {json_file}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{json_file} is not valid JSON ({e}); is it truncated? Give a COCO "
                           "instances .json") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{json_file} holds a JSON {type(data).__name__}, not a COCO "
                           "instances object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{json_file} has no '{key}' list; a COCO instances file holds "
                               "'images', 'annotations' and 'categories'")
        if not data[key]:
            raise DatasetError(f"{json_file}: '{key}' is empty; there is nothing to train or "
                               "evaluate on")
    return data


def check_coco(json_file: str, image_root: str) -> Tuple[List[Problem], set, int]:
    """(problems, ids of the annotations to drop, images without annotations) of a COCO json."""
    data = read_coco_json(json_file)
    images = {img.get("id"): img for img in data["images"]}
    categories = {c.get("id") for c in data["categories"]}
    problems, bad_annotations = [], set()
    for image in data["images"]:
        path = os.path.join(image_root, str(image.get("file_name", "")))
        if not os.path.isfile(path):
            problems.append(Problem(path, image.get("id"), None, "image file does not exist"))
    annotated = set()
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id"))
        file_name = os.path.join(image_root, str(image.get("file_name"))) if image else "?"
        what = None
        if image is None:
            what = f"image id {ann.get('image_id')} is not in 'images'"
        elif ann.get("category_id") not in categories:
            what = f"category id {ann.get('category_id')} is not declared in 'categories'"
        elif ann.get("iscrowd", 0) == 0:
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                what = f"bbox {bbox!r} is not [x, y, width, height]"
            else:
                x, y, w, h = bbox
                what = box_problem(x, y, x + w, y + h, image.get("width"), image.get("height"))
        if what:
            problems.append(Problem(file_name, ann.get("image_id"), ann.get("id"), what))
            bad_annotations.add(ann.get("id"))
        elif image is not None:
            annotated.add(image.get("id"))
    return problems, bad_annotations, len(images) - len(annotated)


def write_cleaned_coco(json_file: str, bad_annotations: Iterable, out_file: str) -> str:
    """A copy of ``json_file`` without the annotations ``bad_annotations`` (ids)."""
    data = read_coco_json(json_file)
    bad = set(bad_annotations)
    data["annotations"] = [a for a in data["annotations"] if a.get("id") not in bad]
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    tmp = out_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, out_file)
    return out_file


# ------------------------------------------------------------------------ detectron2 records

def check_records(records: Sequence[Dict], num_classes: int) -> Tuple[List[Problem], List[Dict], int]:
    """(problems, records without the bad annotations, images without annotations) of
    detectron2 dataset dicts (any registered dataset: VOC, or COCO once loaded)."""
    from detectron2.structures import BoxMode

    problems, cleaned, unannotated = [], [], 0
    for record in records:
        file_name, image_id = record.get("file_name", "?"), record.get("image_id")
        if not os.path.isfile(file_name):
            problems.append(Problem(file_name, image_id, None, "image file does not exist"))
        kept = []
        for i, ann in enumerate(record.get("annotations", [])):
            box = BoxMode.convert(list(ann["bbox"]), ann["bbox_mode"], BoxMode.XYXY_ABS)
            what = box_problem(*box, record.get("width"), record.get("height"))
            if what is None and not 0 <= ann.get("category_id", -1) < num_classes:
                what = f"category {ann.get('category_id')} is not one of the {num_classes} classes"
            if what:
                problems.append(Problem(file_name, image_id, ann.get("id", i), what))
            else:
                kept.append(ann)
        unannotated += not kept
        cleaned.append({**record, "annotations": kept})
    return problems, cleaned, unannotated
