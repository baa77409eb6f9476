"""PASCAL VOC 2012 test (Table 7's "07++12" column): the images without annotations, and the
result files the VOC evaluation server takes, since that test set has no public labels.

* ``register_voc_test_images(name, dirname, split, year, class_names)``: a dataset of the images
  listed in ``ImageSets/Main/<split>.txt`` (no ``Annotations/`` needed), evaluated by
  :class:`VOCSubmissionWriter`. ``voc_2012_test`` is registered on import under
  ``$DETECTRON2_DATASETS/VOC2012`` (detectron2 has no such builtin).
* :class:`VOCSubmissionWriter`: a ``DatasetEvaluator`` that writes
  ``results/VOC<year>/Main/comp4_det_<split>_<class>.txt`` (one line per box:
  ``<image id> <score> <xmin> <ymin> <xmax> <ymax>``, 1-based pixel coordinates, as the VOC
  devkit) and ``results.tar.gz`` of that folder, ready to upload. Method "comp4": trained on
  data outside VOC 2012 trainval too (07++12), as the paper.
"""
import logging
import os
import tarfile
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.pascal_voc import CLASS_NAMES
from detectron2.evaluation import DatasetEvaluator

from ..distributed import gather, is_main_process

logger = logging.getLogger(__name__)

#: ``evaluator_type`` of the datasets registered here.
EVALUATOR_TYPE = "pascal_voc_submission"


def _image_ids(dirname: str, split: str) -> List[str]:
    listing = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    with open(listing) as f:
        return [line.strip() for line in f if line.strip()]


def load_voc_test_images(dirname: str, split: str) -> List[Dict]:
    """Detectron2 dataset dicts (file name and id only) of a VOC split's images."""
    return [{"file_name": os.path.join(dirname, "JPEGImages", f"{image_id}.jpg"),
             "image_id": image_id} for image_id in _image_ids(dirname, split)]


def register_voc_test_images(name: str, dirname: str, split: str = "test", year: int = 2012,
                             class_names: Sequence[str] = CLASS_NAMES) -> str:
    """Register the unannotated images of a VOC split for writing server result files."""
    DatasetCatalog.register(name, lambda: load_voc_test_images(dirname, split))
    MetadataCatalog.get(name).set(thing_classes=list(class_names), dirname=dirname, year=year,
                                  split=split, evaluator_type=EVALUATOR_TYPE)
    return name


def register_builtin_voc2012_test() -> None:
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    if "voc_2012_test" not in DatasetCatalog.list():
        register_voc_test_images("voc_2012_test", os.path.join(root, "VOC2012"), "test", 2012)


class VOCSubmissionWriter(DatasetEvaluator):
    """Writes the VOC server's per-class detection files instead of computing a metric."""

    def __init__(self, dataset_name: str, output_dir: str):
        meta = MetadataCatalog.get(dataset_name)
        self._dataset_name = dataset_name
        self._class_names = list(meta.thing_classes)
        self._year, self._split = meta.year, meta.split
        self._output_dir = output_dir
        self._lines: Dict[int, List[str]] = defaultdict(list)

    def reset(self) -> None:
        self._lines = defaultdict(list)

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            boxes = instances.pred_boxes.tensor.numpy()
            for box, score, cls in zip(boxes, instances.scores.tolist(),
                                       instances.pred_classes.tolist()):
                xmin, ymin, xmax, ymax = box
                # The devkit's boxes are 1-based pixel indices (detectron2 subtracts 1 on load).
                self._lines[cls].append(f"{inp['image_id']} {score:.3f} {xmin + 1:.1f} "
                                        f"{ymin + 1:.1f} {xmax:.1f} {ymax:.1f}")

    def result_folder(self) -> str:
        return os.path.join(self._output_dir, "results", f"VOC{self._year}", "Main")

    def evaluate(self) -> Optional[Dict]:
        gathered = gather(dict(self._lines), dst=0)
        if not is_main_process():
            return None
        lines = defaultdict(list)
        for part in gathered:
            for cls, cls_lines in part.items():
                lines[cls].extend(cls_lines)
        folder = self.result_folder()
        os.makedirs(folder, exist_ok=True)
        for cls, name in enumerate(self._class_names):
            path = os.path.join(folder, f"comp4_det_{self._split}_{name}.txt")
            with open(path + ".tmp", "w") as f:
                f.write("".join(line + "\n" for line in lines[cls]))
            os.replace(path + ".tmp", path)
        archive = os.path.join(self._output_dir, "results.tar.gz")
        with tarfile.open(archive + ".tmp", "w:gz") as tar:
            tar.add(os.path.join(self._output_dir, "results"), arcname="results")
        os.replace(archive + ".tmp", archive)
        logger.info("%s has no public labels: wrote %d boxes in %s for the VOC evaluation server "
                    "(upload %s).", self._dataset_name, sum(map(len, lines.values())), folder,
                    archive)
        return {}


register_builtin_voc2012_test()
