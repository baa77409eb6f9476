"""Every config in configs/detection/ builds its model and trains one step on the synthetic
COCO-format shapes; bad config values fail at build time, naming the valid values."""
import math
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, build_detection_train_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.events import EventStorage

from resnet_backbone.models.blocks import BasicBlock, BottleneckBlock
from resnet_backbone.detection import get_detection_cfg

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("Base-"))
BASE_C4 = CONFIG_DIR / "Base-PaperRCNN-C4.yaml"
BASE_VGG = CONFIG_DIR / "Base-PaperRCNN-VGG16.yaml"

#: The configs' models on tiny inputs: images, proposal and RoI counts shrink; the networks,
#: heads and solver stay as configured.
TINY = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "INPUT.MIN_SIZE_TRAIN", (96,), "INPUT.MAX_SIZE_TRAIN", 120,
        "MODEL.ANCHOR_GENERATOR.SIZES", [[24, 48, 96]],  # scaled with the images (RPN has work)
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 32,
        "MODEL.RPN.PRE_NMS_TOPK_TEST", 300, "MODEL.RPN.POST_NMS_TOPK_TEST", 32,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 8, "SOLVER.IMS_PER_BATCH", 1,
        "DATALOADER.NUM_WORKERS", 0]


@torch.no_grad()
def damp_residual_branches_(model: torch.nn.Module, scale: float = 0.2) -> None:
    """Stand-in for ImageNet weights: with FrozenBN and random weights nothing normalises a
    ResNet-101, whose activations then grow block after block until the RPN sees Inf. Trained
    ResNets have small residual responses (the paper's Fig. 7), so scale each block's last
    (frozen) norm down, as pre-training would have left it. VGG-16 has no such blocks."""
    for block in model.modules():
        if isinstance(block, (BasicBlock, BottleneckBlock)):
            last = block.conv3 if isinstance(block, BottleneckBlock) else block.conv2
            last.norm.weight.mul_(scale)
            last.norm.bias.mul_(scale)


@pytest.fixture(scope="module")
def shapes_coco_train(shapes_coco):
    name = "test_detection_configs_shapes_coco"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, *shapes_coco)
    return name


def test_every_config_is_listed():
    names = {p.name for p in CONFIGS}
    for backbone in ("VGG16", "R_101_C4"):
        for data in ("voc0712", "voc07++12", "coco2014", "coco2017"):
            assert f"faster_rcnn_{backbone}_{data}.yaml" in names
    assert {"faster_rcnn_R_50_C4_voc0712.yaml", "faster_rcnn_R_50_C4_coco2017.yaml"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_trains_one_step(config, shapes_coco_train):
    cfg = get_detection_cfg(str(config), TINY + ["DATASETS.TRAIN", (shapes_coco_train,)])
    original = get_detection_cfg(str(config))
    is_paper_recipe = config.name.startswith("faster_rcnn_")  # (the others: demos)
    if is_paper_recipe:
        assert original.MODEL.WEIGHTS, "each paper config names the ImageNet weights it expects"
        assert original.MODEL.RPN.POST_NMS_TOPK_TEST == 300 and original.INPUT.MIN_SIZE_TEST == 600
    torch.manual_seed(0)
    model = build_model(cfg).train()
    if cfg.MODEL.PAPER_RESNET.NORM == "FrozenBN":
        damp_residual_branches_(model)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert bool(frozen) == is_paper_recipe, "FREEZE_AT 2 freezes the first layers"
    batch = next(iter(build_detection_train_loader(cfg)))
    with EventStorage(0):
        losses = model(batch)
        loss = sum(losses.values())
        assert math.isfinite(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"} <= set(losses)
    assert losses["loss_rpn_cls"] > 0 and losses["loss_cls"] > 0
    params = dict(model.named_parameters())
    changed = [n for n, p in trainable.items() if not torch.equal(params[n], p)]
    assert any(n.startswith("backbone.") for n in changed)
    assert any(n.startswith("roi_heads.") for n in changed)
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    if is_paper_recipe:  # no warm-up in the paper: BASE_LR from the first iteration
        assert optimizer.param_groups[0]["lr"] == pytest.approx(original.SOLVER.BASE_LR)
    improvements = cfg.MODEL.PAPER_IMPROVEMENTS
    if improvements.BOX_REFINEMENT or improvements.TEST_SCALES:  # inference-time improvements
        if improvements.TEST_SCALES:  # the paper's pyramid, relative to its 600: 0.33x .. 1.67x
            assert list(improvements.TEST_SCALES) == [200, 400, 600, 800, 1000]
            model.test_scales = (48, 96, 144)
        # every class of every region, so that the boxes of both passes can be checked
        model.roi_heads.box_predictor.test_score_thresh = -1.0
        heads, passes = model.roi_heads, []
        region_features = heads.region_features
        heads.region_features = lambda features, regions: (
            passes.append(type(features).__name__) or region_features(features, regions))
        model.eval()
        with torch.no_grad():
            image = batch[0]["image"]
            (output,) = model([{"image": image, "height": image.shape[1],
                                "width": image.shape[2]}])
        # the config switches its improvements on: a second pass for refinement, region
        # features from the pyramid for multi-scale testing
        features = "ScalePyramid" if improvements.TEST_SCALES else "dict"
        assert passes == [features] * (2 if improvements.BOX_REFINEMENT else 1)
        detections = output["instances"]
        assert len(detections) > 0 and detections.scores.isfinite().all()
        assert detections.pred_boxes.tensor.isfinite().all()


@pytest.mark.parametrize("base, key, value, valid", [
    (BASE_C4, "MODEL.PAPER_RESNET.DEPTH", 42, "18, 34, 50, 101, 152"),
    (BASE_C4, "MODEL.PAPER_RESNET.SHORTCUT", "D", "'A'.*'B'.*'C'"),
    (BASE_C4, "MODEL.PAPER_RESNET.FREEZE_AT", 7, r"0\.\.4"),
    (BASE_C4, "MODEL.PAPER_RESNET.OUT_FEATURES", ["res6"], "'stem', 'res2', 'res3', 'res4', 'res5'"),
    (BASE_C4, "MODEL.PAPER_RESNET.NORM", "LayerNorm", "'BN'.*'SyncBN'.*'FrozenBN'.*'GN'"),
    (BASE_C4, "MODEL.PAPER_RESNET.RES5_DILATION", 3, "1 or 2"),
    (BASE_VGG, "MODEL.VGG16.OUT_FEATURES", ["conv6_1"], "'conv1_2'.*'conv5_3'"),
    (BASE_VGG, "MODEL.VGG16.FREEZE_AT", 6, r"0\.\.5"),
    (BASE_VGG, "MODEL.VGG16.DROPOUT", 1.5, r"\[0, 1\)"),
])
def test_bad_config_value_fails_at_build_listing_valid_values(base, key, value, valid):
    cfg = get_detection_cfg(str(base), ["MODEL.DEVICE", "cpu", key, value])
    node = key.rsplit(".", 1)[0]
    with pytest.raises(ValueError, match=f"{node}.*{valid}"):
        build_model(cfg)


def test_fpn_needs_its_input_features():
    cfg = get_detection_cfg(str(BASE_C4), ["MODEL.DEVICE", "cpu",
                                           "MODEL.BACKBONE.NAME", "build_paper_resnet_fpn_backbone",
                                           "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"]])
    with pytest.raises(ValueError, match="MODEL.PAPER_RESNET.OUT_FEATURES"):
        build_model(cfg)
