"""VOC 2012 test has no public labels: evaluating it writes the VOC server's result files."""
import os
import shutil
import tarfile

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, Instances

from resnet_backbone.data.synthetic import write_shapes_voc
from resnet_backbone.detection import VOCSubmissionWriter, get_detection_cfg, register_voc_test_images
from resnet_backbone.detection.datasets import check_datasets, evaluator_type
from resnet_backbone.detection.trainer import DetectionTrainer


def test_voc_2012_test_is_registered_and_the_07pp12_configs_evaluate_it():
    assert "voc_2012_test" in DatasetCatalog.list()
    assert evaluator_type("voc_2012_test") == "pascal_voc_submission"
    for net in ("R_101_C4", "VGG16"):
        cfg = get_detection_cfg(f"configs/detection/faster_rcnn_{net}_voc07++12.yaml")
        assert tuple(cfg.DATASETS.TEST) == ("voc_2012_test",)


def test_writer_makes_per_class_files_and_an_archive(tmp_path):
    info = write_shapes_voc(tmp_path / "VOC", num_images=3, split="test", num_classes=3, seed=5)
    shutil.rmtree(tmp_path / "VOC" / "Annotations")  # the real test set ships no labels
    name = register_voc_test_images("shapes_voc_test_submission", info["dirname"], "test", 2012,
                                    info["class_names"])
    check_datasets([name])  # no Annotations/ needed
    images = DatasetCatalog.get(name)
    assert len(images) == 3 and os.path.isfile(images[0]["file_name"])

    cfg = get_detection_cfg("", ["OUTPUT_DIR", str(tmp_path / "out")])
    writer = DetectionTrainer.build_evaluator(cfg, name)
    assert isinstance(writer, VOCSubmissionWriter)
    writer.reset()
    for i, image in enumerate(images):
        inst = Instances((100, 120))
        inst.pred_boxes = Boxes(torch.tensor([[10.0, 20.0, 50.5, 60.0], [0.0, 0.0, 30.0, 40.0]]))
        inst.scores = torch.tensor([0.9, 0.25])
        inst.pred_classes = torch.tensor([2, 0])
        writer.process([{"image_id": image["image_id"]}], [{"instances": inst}])
    assert writer.evaluate() == {}

    folder = tmp_path / "out" / "inference" / name / "results" / "VOC2012" / "Main"
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(f"comp4_det_test_{c}.txt" for c in info["class_names"])
    first = (folder / f"comp4_det_test_{info['class_names'][2]}.txt").read_text().splitlines()
    assert first[0] == f"{images[0]['image_id']} 0.900 11.0 21.0 50.5 60.0"  # 1-based xmin/ymin
    assert len(first) == 3
    assert (folder / f"comp4_det_test_{info['class_names'][1]}.txt").read_text() == ""
    with tarfile.open(tmp_path / "out" / "inference" / name / "results.tar.gz") as tar:
        assert f"results/VOC2012/Main/comp4_det_test_{info['class_names'][0]}.txt" in tar.getnames()


def test_missing_images_listing_is_reported(tmp_path):
    name = register_voc_test_images("voc_submission_missing", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/test.txt"):
        check_datasets([name])
