"""Configs that start from another config's trained model (fine-tuning it, or evaluating it with
a test-time improvement) load all of it: only the class-specific box predictor may be left at
its initial values, and only when the number of classes differs. A skipped RPN or res5 would
train from scratch behind one warning line."""
import re
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.trainer import DetectionTrainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
#: config -> the config whose trained model it starts from (its header says so).
STARTS_FROM = {
    "faster_rcnn_R_101_C4_voc0712_plus3": "faster_rcnn_R_101_C4_coco2014_refine_context",
    "faster_rcnn_R_101_C4_voc07++12_plus3": "faster_rcnn_R_101_C4_coco2014_refine_context",
    "faster_rcnn_R_101_C4_coco2014_refine": "faster_rcnn_R_101_C4_coco2014",
    "faster_rcnn_R_101_C4_coco2014_refine_context_multiscale":
        "faster_rcnn_R_101_C4_coco2014_refine_context",
}
#: What a model with other classes may leave uninitialised: the class-specific layers.
CLASS_SPECIFIC = ["roi_heads.box_predictor.bbox_pred.bias", "roi_heads.box_predictor.bbox_pred.weight",
                  "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.cls_score.weight"]


def cfg_of(name: str, *opts):
    return get_detection_cfg(str(CONFIG_DIR / f"{name}.yaml"), ["MODEL.DEVICE", "cpu", *opts])


def test_every_config_that_names_a_trained_model_is_checked():
    """A config that points at a trained model (``output/.../model_final.pth`` as MODEL.WEIGHTS,
    or ``--eval-only MODEL.WEIGHTS ...`` in its header) is in STARTS_FROM, and its MODEL.WEIGHTS
    is the source config's OUTPUT_DIR."""
    pointing = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")
                      if re.search(r"--eval-only|output/\S+/model_final\.pth", p.read_text()))
    assert pointing == sorted(STARTS_FROM)
    for name, source in STARTS_FROM.items():
        weights = cfg_of(name).MODEL.WEIGHTS
        if weights.startswith("output/"):
            assert weights == f"{cfg_of(source).OUTPUT_DIR}/model_final.pth", name


@pytest.fixture(scope="module")
def trained_files(tmp_path_factory):
    """Each source config's model (random weights: only the names and shapes matter), saved as
    ``tools/train_det.py`` saves it."""
    folder = tmp_path_factory.mktemp("sources")
    files = {}
    for source in sorted(set(STARTS_FROM.values())):
        torch.manual_seed(0)
        model = build_model(cfg_of(source, "MODEL.WEIGHTS", ""))
        files[source] = folder / f"{source}.pth"
        torch.save({"model": model.state_dict(), "iteration": 0}, files[source])
        del model
    return files


@pytest.mark.parametrize("name", sorted(STARTS_FROM))
def test_loading_the_source_model_leaves_only_the_class_specific_predictor(name, trained_files):
    source = STARTS_FROM[name]
    cfg = cfg_of(name, "MODEL.WEIGHTS", str(trained_files[source]))
    model = DetectionTrainer.build_model(cfg)
    checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    other_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES != cfg_of(source).MODEL.ROI_HEADS.NUM_CLASSES
    assert checkpointer.last_load["missing"] == (CLASS_SPECIFIC if other_classes else [])
