"""Dataset checks before a detection job starts: a report, not a traceback hours later.

Every dataset a job trains or tests on is checked once, whatever registered it (``--dataset``,
detectron2's builtin COCO / VOC, ``register_pascal_voc``):

* a COCO json must parse (an unreadable or truncated file is named), and hold non-empty
  ``images``, ``annotations`` and ``categories`` (an empty one names the file and the key);
* each image id and each annotation id is used once (detectron2 keeps one ``images`` entry
  per id and gives it the boxes of the others; it stops on repeated annotation ids with an
  ``AssertionError``, and COCO evaluation would count one box in place of another);
* the categories fit the model: no more than ``MODEL.ROI_HEADS.NUM_CLASSES`` (a category past
  it would be trained as background);
* each image file exists and can be read: the core's check (``resnet_backbone.data.image_check``:
  its header is decoded, and a JPEG without an end-of-image marker in its last KiB in full;
  a process pool above ``image_check.SERIAL_BELOW`` files; a cache keyed by the (path, size,
  mtime) of the files of each group, a ``BUCKETS``-th of a folder, so that a rerun verifies
  only the groups of new or changed files), its reasons in this module's words;
* each box has a positive width and height and overlaps its image;
* each category is declared (COCO ``categories``; VOC: the dataset's class names);
* images without annotations are counted (detectron2 drops them from training).

Problems are listed in one table (file, image id, annotation id, what is wrong; the first
``MAX_ROWS``, the ones that stop the job first). Then, per kind (``Problem.kind``):

* ``"fatal"`` (repeated ids, categories past NUM_CLASSES): an error, always;
* ``"image"`` (missing, empty, unreadable or truncated image): in a training set an error,
  or with ``DATALOADER.SKIP_CORRUPT True`` the image and its annotations are left out (a
  warning names them); in a test set an error, always;
* ``"annotation"`` (bad box, undeclared category): in a training set skipped with a warning
  naming the count (it then trains on a cleaned copy of the COCO json, or on the filtered VOC
  records); ``DATASETS.STRICT True`` makes them an error. Test sets are never changed: their
  annotation problems are reported (or, strict, an error).
"""
import hashlib
import json
import logging
import os
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from tabulate import tabulate

from ..checkpoint import write_text_atomic
from ..data import image_check

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
    #: "fatal" (always an error), "image" (missing / unreadable file: an error, or left out of
    #: a training set with DATALOADER.SKIP_CORRUPT), "annotation" (skipped, or DATASETS.STRICT).
    kind: str = "annotation"


_ORDER = {"fatal": 0, "image": 1, "annotation": 2}


def problems_table(problems: Sequence[Problem], max_rows: int = MAX_ROWS) -> str:
    """One table of ``problems``, those that stop a job first (fatal, then image, then
    annotation problems; stable within a kind)."""
    problems = sorted(problems, key=lambda p: _ORDER.get(p.kind, 3))
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


# ------------------------------------------------------------------------------ image files

#: The files of one folder are cached in this many groups (by a hash of their names), so that a
#: changed file re-verifies its group only (COCO's train2017/ holds 118k images).
BUCKETS = 256
#: The core's reasons (``image_check.check_image``) in this module's words.
_WORDS = {image_check.MISSING: "image file does not exist",
          image_check.EMPTY: "empty image file",
          image_check.TRUNCATED: "truncated image file",
          image_check.NOT_IMAGE: "not an image PIL can read"}
MISSING = _WORDS[image_check.MISSING]


def _worded(why: Optional[str]) -> Optional[str]:
    return None if why is None else _WORDS.get(why, f"unreadable image ({why})")


def image_problem(path: str) -> Optional[str]:
    """What is wrong with the image file ``path`` (a few words), or None when it can be read
    (``image_check.check_image``)."""
    return _worded(image_check.check_image(path))


def image_cache_file(image_root: str) -> str:
    """Where the check of the images under ``image_root`` is cached:
    ``$XDG_CACHE_HOME/resnet_backbone/detection_image_check/<hash of its path>.json``
    (default ``~/.cache``), not ``OUTPUT_DIR``: each experiment has its own, and would verify
    COCO again."""
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha1(os.path.abspath(image_root).encode()).hexdigest()[:16]
    return os.path.join(home, "resnet_backbone", "detection_image_check", f"{digest}.json")


@dataclass
class ImageCheck:
    """What ``check_images`` found: ``bad`` maps each missing or unreadable file to why."""

    total: int
    bad: Dict[str, str] = field(default_factory=dict)
    verified: int = 0  # files decoded now (the others' results came from the cache)
    seconds: float = 0.0
    cache_file: Optional[str] = None

    def summary(self) -> str:
        return (f"{self.total} images, {len(self.bad)} missing or unreadable, {self.verified} "
                f"verified now ({self.total - self.verified} unchanged since the cached check), "
                f"{self.seconds:.1f} s")


def _bucket(path: str) -> str:
    folder, name = os.path.split(path)
    return f"{folder}#{zlib.crc32(name.encode()) % BUCKETS}"


def check_images(paths: Iterable[str], cache_file: Optional[str] = None,
                 workers: Optional[int] = None) -> ImageCheck:
    """Check the image files ``paths`` (``image_problem``), reusing the result of each group
    of files (a ``BUCKETS``-th of a folder) whose (path, size, mtime) are as in ``cache_file``
    (None: no cache): ``image_check.check_files``, which also picks the pool of ``workers``
    (None: its choice); the new results are added to the cache."""
    start = time.perf_counter()
    paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    found = image_check.check_files(paths, _bucket, cache=[cache_file] if cache_file else (),
                                    workers=workers)
    report = ImageCheck(len(paths), {p: _worded(why) for p, why in found.bad.items()},
                        found.verified, cache_file=found.cache_file)
    report.seconds = time.perf_counter() - start
    return report


def image_problems(check: ImageCheck, image_ids: Dict[str, object]) -> List[Problem]:
    """The rows of ``check.bad``; ``image_ids`` maps a file to its image id."""
    return [Problem(path, image_ids.get(path, "?"), None, why, kind="image")
            for path, why in check.bad.items()]


def categories_problem(source: str, names: Sequence[str], num_classes: Optional[int]) -> Optional[Problem]:
    """A fatal problem when the dataset's categories ``names`` (in the model's class order)
    are more than ``num_classes`` (``MODEL.ROI_HEADS.NUM_CLASSES``; None: not checked)."""
    if num_classes is None or len(names) <= num_classes:
        return None
    past = ", ".join(repr(str(n)) for n in names[num_classes:num_classes + 3])
    past += ", ..." if len(names) > num_classes + 3 else ""
    return Problem(source, "-", None,
                   f"{len(names)} categories but MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}: "
                   f"{past} would be trained as background; set MODEL.ROI_HEADS.NUM_CLASSES "
                   f"{len(names)}", kind="fatal")


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


@dataclass
class CocoCheck:
    """What ``check_coco`` found in a COCO json and its images."""

    problems: List[Problem]
    bad_annotations: set  # ids of the annotations to drop from a training set
    bad_images: Dict[object, str]  # id -> file of each missing or unreadable image
    unannotated: int  # images without annotations
    images: int  # entries of 'images'
    fatal: List[str]  # one sentence per problem that stops the job (repeated ids, categories)
    image_check: Optional[ImageCheck] = None


def count(n: int, what: str) -> str:
    """'1 image id', '2 image ids'."""
    return f"{n} {what}" + ("" if n == 1 else "s")


def _repeated(entries: Sequence[Dict]) -> Dict[object, List[Dict]]:
    counts = Counter(e.get("id") for e in entries)
    groups = defaultdict(list)
    for e in entries:
        if counts[e.get("id")] > 1:
            groups[e.get("id")].append(e)
    return groups


def check_coco(json_file: str, image_root: str, *, num_classes: Optional[int] = None,
               verify_images: bool = True, cache_file: Optional[str] = None,
               workers: Optional[int] = None) -> CocoCheck:
    """Check a COCO json and its images (see the module); ``num_classes``: the model's
    ``MODEL.ROI_HEADS.NUM_CLASSES`` (None: not checked); ``verify_images`` False only checks
    that each file exists; ``cache_file``: ``check_images``'."""
    data = read_coco_json(json_file)
    problems, fatal, bad_annotations = [], [], set()

    def path_of(image: Dict) -> str:
        return os.path.join(image_root, str(image.get("file_name", "")))

    repeated = _repeated(data["images"])
    for image_id, entries in repeated.items():
        names = ", ".join(str(e.get("file_name")) for e in entries)
        for e in entries:
            problems.append(Problem(path_of(e), image_id, None, f"image id {image_id} is used by "
                                    f"{len(entries)} 'images' entries ({names})", kind="fatal"))
    if repeated:
        image_id, entries = next(iter(repeated.items()))
        fatal.append(f"{json_file} has {count(len(repeated), 'image id')} used by more than one "
                     f"'images' entry (id {image_id}: "
                     f"{', '.join(str(e.get('file_name')) for e in entries)}): "
                     "detectron2 would keep one entry per id and give it the boxes of the others; "
                     "give each image its own id, and its annotations that image_id")
    images = {img.get("id"): img for img in data["images"]}
    repeated = _repeated(data["annotations"])
    for ann_id, entries in repeated.items():
        for e in entries:
            image = images.get(e.get("image_id"))
            problems.append(Problem(path_of(image) if image else "?", e.get("image_id"), ann_id,
                                    f"annotation id {ann_id} is used {len(entries)} times",
                                    kind="fatal"))
    if repeated:
        ann_id, entries = next(iter(repeated.items()))
        fatal.append(f"{json_file} has {count(len(repeated), 'annotation id')} used more than "
                     f"once (id {ann_id}: {len(entries)} times): detectron2 stops on them and COCO "
                     "evaluation would count one box in place of another; give each annotation "
                     "its own id")
    categories = sorted(data["categories"], key=lambda c: c.get("id") if isinstance(c.get("id"), int) else 0)
    too_many = categories_problem(json_file, [c.get("name", c.get("id")) for c in categories], num_classes)
    if too_many:
        problems.append(too_many)
        fatal.append(f"{json_file} has {too_many.what}")

    ids_of = {os.path.abspath(path_of(img)): img.get("id") for img in data["images"]}
    check = None
    if verify_images:
        check = check_images([path_of(img) for img in data["images"]], cache_file, workers)
        bad_files = check.bad
    else:
        bad_files = {p: MISSING for p in ids_of if not os.path.isfile(p)}
        check = ImageCheck(len(ids_of), bad_files)
    problems.extend(image_problems(check, ids_of))
    bad_images = {ids_of[p]: p for p in bad_files}

    categories = {c.get("id") for c in data["categories"]}
    annotated = set()
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id"))
        file_name = path_of(image) if image else "?"
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
    return CocoCheck(problems, bad_annotations, bad_images, len(images) - len(annotated),
                     len(data["images"]), fatal, check)


def write_cleaned_coco(json_file: str, bad_annotations: Iterable, out_file: str,
                       bad_images: Iterable = ()) -> str:
    """A copy of ``json_file`` without the annotations ``bad_annotations`` (ids), and without
    the images ``bad_images`` (ids) and their annotations."""
    data = read_coco_json(json_file)
    bad, gone = set(bad_annotations), set(bad_images)
    data["images"] = [i for i in data["images"] if i.get("id") not in gone]
    data["annotations"] = [a for a in data["annotations"]
                           if a.get("id") not in bad and a.get("image_id") not in gone]
    write_text_atomic(out_file, json.dumps(data))  # several machines may share the folder
    return out_file


# ------------------------------------------------------------------------ detectron2 records

def check_records(records: Sequence[Dict], num_classes: int, *, verify_images: bool = True,
                  cache_file: Optional[str] = None,
                  workers: Optional[int] = None) -> Tuple[List[Problem], List[Dict], int]:
    """(problems, records without the bad annotations, images without annotations) of
    detectron2 dataset dicts (any registered dataset: VOC, or COCO once loaded); the image
    files are checked as ``check_images`` (``verify_images`` False: only that they exist).
    A record whose image is missing or unreadable stays in the records: leaving it out is the
    caller's choice (``Problem.kind`` "image")."""
    from detectron2.structures import BoxMode

    files = [record.get("file_name", "?") for record in records]
    if verify_images:
        check = check_images(files, cache_file, workers)
    else:
        check = ImageCheck(len(files), {os.path.abspath(p): MISSING for p in files
                                        if not os.path.isfile(p)})
    problems, cleaned, unannotated = [], [], 0
    for record in records:
        file_name, image_id = record.get("file_name", "?"), record.get("image_id")
        why = check.bad.get(os.path.abspath(file_name))
        if why:
            problems.append(Problem(file_name, image_id, None, why, kind="image"))
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
