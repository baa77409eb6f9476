"""The paper's two detectors (Faster R-CNN VGG-16 and ResNet-101 C4, from configs/detection/)
train a few iterations with detectron2's ``DefaultTrainer`` and are evaluated with
``COCOEvaluator`` (COCO json shapes) and ``PascalVOCDetectionEvaluator`` (VOC-layout shapes,
the 11-point VOC 2007 metric of Table 7)."""
import json
import math
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.datasets import numpy_compat  # np.str for v0.6's VOC loader
from test_detection_configs import damp_residual_branches_

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
COCO_NAME, VOC_NAME = "test_detection_train_eval_coco", "test_detection_train_eval_voc"


@pytest.fixture(scope="module")
def datasets(shapes_coco, shapes_voc):
    if COCO_NAME not in DatasetCatalog.list():
        register_coco_instances(COCO_NAME, {}, *shapes_coco)
    if VOC_NAME not in DatasetCatalog.list():
        register_pascal_voc(VOC_NAME, shapes_voc["dirname"], shapes_voc["split"], 2007,
                            shapes_voc["class_names"])
    return COCO_NAME, VOC_NAME


@pytest.mark.parametrize("config", ["faster_rcnn_VGG16_voc0712.yaml",
                                    "faster_rcnn_R_101_C4_voc0712.yaml"])
def test_train_then_evaluate_coco_and_voc(config, datasets, tmp_path):
    coco_name, voc_name = datasets
    # The config's model; only depth-independent sizes shrink (images, proposals, RoIs, iters).
    cfg = get_detection_cfg(str(CONFIG_DIR / config), [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "DATASETS.TRAIN", (coco_name,), "DATASETS.TEST", (),
        "MODEL.ANCHOR_GENERATOR.SIZES", [[32, 64, 128]],  # 128/600 of the paper's 128..512
        "INPUT.MIN_SIZE_TRAIN", (128,), "INPUT.MAX_SIZE_TRAIN", 160,
        "INPUT.MIN_SIZE_TEST", 96, "INPUT.MAX_SIZE_TEST", 120,
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 32,
        "MODEL.RPN.PRE_NMS_TOPK_TEST", 200, "MODEL.RPN.POST_NMS_TOPK_TEST", 12,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16, "SOLVER.IMS_PER_BATCH", 2,
        "SOLVER.MAX_ITER", 3, "SOLVER.STEPS", (2,), "SOLVER.CHECKPOINT_PERIOD", 1000,
        "DATALOADER.NUM_WORKERS", 0, "OUTPUT_DIR", str(tmp_path)])
    torch.manual_seed(0)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    damp_residual_branches_(trainer.model)
    trainer.train()
    assert trainer.iter == 3  # ran iterations 0, 1, 2
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    losses = [m for m in metrics if "total_loss" in m]
    assert losses and all(math.isfinite(m["total_loss"]) for m in losses)
    assert losses[-1]["loss_rpn_cls"] > 0 and losses[-1]["loss_cls"] > 0
    assert (tmp_path / "model_final.pth").is_file()

    cfg.defrost()
    cfg.DATASETS.TEST = (coco_name, voc_name)
    evaluators = [COCOEvaluator(coco_name, output_dir=str(tmp_path / "coco"), use_fast_impl=False),
                  PascalVOCDetectionEvaluator(voc_name)]
    with numpy_compat():
        results = DefaultTrainer.test(cfg, trainer.model, evaluators)
    coco, voc = results[coco_name]["bbox"], results[voc_name]["bbox"]
    for value in (coco["AP"], coco["AP50"], voc["AP"], voc["AP50"], voc["AP75"]):
        assert math.isfinite(value) and 0.0 <= value <= 100.0
    # real detections were scored: per-category COCO AP and the raw VOC result files exist
    assert any(k.startswith("AP-") for k in coco)
    assert (tmp_path / "coco" / "coco_instances_results.json").is_file()
    assert json.loads((tmp_path / "coco" / "coco_instances_results.json").read_text())
