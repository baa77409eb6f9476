"""The Detectron2 plugin's networks against detectron2's own ResNet, and weight loading.

* ``build_paper_resnet`` with detectron2's weights gives detectron2's feature maps, and a whole
  Faster R-CNN R-101-C4 (our backbone + ``PaperRes5ROIHeads``) loaded from a detectron2
  model-zoo style file gives the builtin model's detections.
* MSRA caffe2 ``.pkl`` files load through ``PaperDetectionCheckpointer``; a crafted ``.pkl`` is
  refused without running anything; a checkpoint matching nothing raises.
"""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.backbone import build_resnet_backbone

import resnet_backbone
from resnet_backbone.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint_file
from resnet_backbone.convert import paper_to_torchvision_vgg16
from resnet_backbone.detection import (PaperDetectionCheckpointer, add_paper_resnet_config,
                                       build_paper_resnet,
                                       build_paper_resnet_fpn_backbone, get_detection_cfg)

from helpers import randomize_norms_

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"

STAGES = ["stem", "res2", "res3", "res4", "res5"]


def c4_cfg(builtin: bool, depth: int = 101):
    """A tiny-test Faster R-CNN C4: detectron2's builtin ResNet or ours, same settings."""
    cfg = get_detection_cfg(opts=[
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "MODEL.RPN.PRE_NMS_TOPK_TEST", 200, "MODEL.RPN.POST_NMS_TOPK_TEST", 16,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        "MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.RESNETS.STRIDE_IN_1X1", True, "MODEL.RESNETS.OUT_FEATURES", ["res4"],
        "MODEL.PAPER_RESNET.DEPTH", depth])
    if builtin:
        cfg.merge_from_list(["MODEL.BACKBONE.NAME", "build_resnet_backbone",
                             "MODEL.ROI_HEADS.NAME", "Res5ROIHeads"])
    else:
        cfg.merge_from_list(["MODEL.BACKBONE.NAME", "build_paper_resnet",
                             "MODEL.ROI_HEADS.NAME", "PaperRes5ROIHeads"])
    return cfg


@pytest.mark.parametrize("depth", [18, 101])
@torch.no_grad()
def test_backbone_matches_detectron2_resnet(depth):
    cfg = get_detection_cfg(opts=[
        "MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.NORM", "FrozenBN",
        "MODEL.RESNETS.STRIDE_IN_1X1", True, "MODEL.RESNETS.OUT_FEATURES", STAGES,
        "MODEL.BACKBONE.FREEZE_AT", 2, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if depth < 50 else 256,
        "MODEL.PAPER_RESNET.DEPTH", depth, "MODEL.PAPER_RESNET.OUT_FEATURES", STAGES])
    theirs = build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()
    ours = build_paper_resnet(cfg, ShapeSpec(channels=3)).eval()
    randomize_norms_(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names, same shapes
    assert {k: (v.channels, v.stride) for k, v in ours.output_shape().items()} == \
        {k: (v.channels, v.stride) for k, v in theirs.output_shape().items()}
    x = torch.randn(2, 3, 96, 128) * 50
    expected, actual = theirs(x), ours(x)
    for name in STAGES:
        assert expected[name].abs().mean() > 0
        assert torch.equal(actual[name], expected[name]), name  # the same ops: bit for bit
    # FREEZE_AT 2: stem and res2 frozen like detectron2's
    frozen = {n for n, p in ours.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in theirs.named_parameters() if not p.requires_grad}


@torch.no_grad()
def test_faster_rcnn_r101_c4_matches_builtin_via_model_zoo_file(tmp_path):
    torch.manual_seed(0)
    builtin = build_model(c4_cfg(builtin=True)).eval()
    randomize_norms_(builtin)
    # Random res4 features are large: damp the RPN's box deltas so that proposals stay inside
    # the small test image instead of being clipped away.
    builtin.proposal_generator.rpn_head.anchor_deltas.weight.mul_(1e-3)
    zoo_file = tmp_path / "model_final.pkl"  # detectron2 model-zoo format: numpy arrays
    with open(zoo_file, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in builtin.state_dict().items()},
                     "__author__": "detectron2 test"}, f)
    ours = build_model(c4_cfg(builtin=False)).eval()
    PaperDetectionCheckpointer(ours).load(str(zoo_file))
    assert set(ours.state_dict()) == set(builtin.state_dict())

    image = torch.rand(3, 128, 160) * 255
    inputs = [{"image": image, "height": 128, "width": 160}]
    expected, actual = builtin(inputs)[0]["instances"], ours(inputs)[0]["instances"]
    assert len(expected) > 0
    assert len(actual) == len(expected)
    # the same ops as the builtin model: max difference 0
    assert torch.equal(actual.pred_boxes.tensor, expected.pred_boxes.tensor)
    assert torch.equal(actual.scores, expected.scores)
    assert torch.equal(actual.pred_classes, expected.pred_classes)


def caffe2_name(key: str) -> str:
    """Our (detectron2) parameter name -> the MSRA caffe2 blob name it is loaded from."""
    suffix = {"weight": "w", "norm.weight": "bn_s", "norm.bias": "bn_b"}
    if key.startswith("stem.conv1."):
        rest = key[len("stem.conv1."):]
        return "conv1_w" if rest == "weight" else f"res_conv1_{suffix[rest]}"
    stage, block, conv, rest = key.split(".", 3)
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c",
              "shortcut": "branch1"}[conv]
    return f"{stage}_{block}_{branch}_{suffix[rest]}"


def test_msra_caffe2_pkl_loads_into_paper_resnet_c4(tmp_path):
    cfg = c4_cfg(builtin=False, depth=50)
    model = build_model(cfg)
    reference = resnet_backbone.build_resnet(50, norm="FrozenBN")  # stem..res5, d2 names
    rng = np.random.default_rng(0)
    blobs = {caffe2_name(k): rng.standard_normal(tuple(v.shape)).astype(np.float32)
             for k, v in reference.state_dict().items()
             if not k.endswith(("running_mean", "running_var"))}
    blobs.update({"fc1000_w": np.zeros((1000, 2048), np.float32), "fc1000_b": np.zeros(1000, np.float32),
                  "res2_0_branch2a_w_momentum": np.zeros((64, 64, 1, 1), np.float32)})
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    PaperDetectionCheckpointer(model).load(str(path))
    state = model.state_dict()
    for ours, blob in [("backbone.stem.conv1.weight", "conv1_w"),
                       ("backbone.stem.conv1.norm.weight", "res_conv1_bn_s"),
                       ("backbone.res4.5.conv2.weight", "res4_5_branch2b_w"),
                       ("backbone.res3.0.shortcut.norm.bias", "res3_0_branch1_bn_b"),
                       ("roi_heads.res5.0.shortcut.weight", "res5_0_branch1_w"),
                       ("roi_heads.res5.2.conv3.norm.weight", "res5_2_branch2c_bn_s")]:
        torch.testing.assert_close(state[ours], torch.from_numpy(blobs[blob]))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_malicious_pkl_is_refused_and_runs_nothing(tmp_path):
    model = build_model(c4_cfg(builtin=False, depth=18))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    marker = tmp_path / "pwned"
    path = tmp_path / "R-18.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": _RunsCode(marker)}}, f)
    cfg = c4_cfg(builtin=False, depth=18)
    cfg.MODEL.WEIGHTS = str(path)
    with pytest.raises(UnsafeCheckpointError, match="posix.system|os.system"):
        PaperDetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    assert not marker.exists()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_checkpoint_matching_nothing_raises(tmp_path):
    model = build_model(c4_cfg(builtin=False, depth=18))
    path = tmp_path / "other.pth"
    torch.save({"model": {"encoder.layer.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match="matches none of the model"):
        PaperDetectionCheckpointer(model).load(str(path))


def test_own_detection_checkpoint_round_trip(tmp_path):
    model = build_model(c4_cfg(builtin=False, depth=18))
    PaperDetectionCheckpointer(model, str(tmp_path)).save("model_final")
    other = build_model(c4_cfg(builtin=False, depth=18))
    PaperDetectionCheckpointer(other).load(str(tmp_path / "model_final.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, other.state_dict()[k]), k


def _load_and_compare(model, checkpoint_file, pairs):
    PaperDetectionCheckpointer(model).load(str(checkpoint_file))
    state = model.state_dict()
    source = load_checkpoint_file(checkpoint_file)
    source = source.get("model", source)
    for ours, theirs in pairs:
        torch.testing.assert_close(state[ours], source[theirs], msg=f"{ours} <- {theirs}")


def test_classifier_checkpoints_load_into_c4_model(tmp_path):
    """torchvision's ResNet file and ours (tools/train_cls.py: {"model": ..., ...})."""
    model = build_model(c4_cfg(builtin=False, depth=18))
    tv_file = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), tv_file)
    _load_and_compare(model, tv_file, [
        ("backbone.stem.conv1.weight", "conv1.weight"),
        ("backbone.stem.conv1.norm.running_var", "bn1.running_var"),
        ("backbone.res3.1.conv2.weight", "layer2.1.conv2.weight"),
        ("roi_heads.res5.0.shortcut.weight", "layer4.0.downsample.0.weight"),
        ("roi_heads.res5.1.conv2.norm.bias", "layer4.1.bn2.bias")])
    ours_file = tmp_path / "model_final.pth"
    classifier = resnet_backbone.create_model("resnet18", num_classes=10)
    torch.save({"model": classifier.state_dict(), "epoch": 3}, ours_file)
    _load_and_compare(model, ours_file, [("backbone.res4.1.conv1.weight", "res4.1.conv1.weight"),
                                         ("roi_heads.res5.1.conv2.weight", "res5.1.conv2.weight")])


def test_torchvision_vgg16_loads_backbone_and_fc6_fc7(tmp_path):
    cfg = get_detection_cfg(str(CONFIG_DIR / "Base-PaperRCNN-VGG16.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "MODEL.VGG16.FC_DIM", 64])  # small fc6/fc7 keeps the file small; shapes as VGG's
    model = build_model(cfg)
    paper = {k: torch.randn(v.shape) for k, v in resnet_backbone.VGG16().state_dict().items()}
    paper.update({"head.fc6.weight": torch.randn(64, 512 * 7 * 7), "head.fc6.bias": torch.randn(64),
                  "head.fc7.weight": torch.randn(64, 64), "head.fc7.bias": torch.randn(64),
                  "fc8.weight": torch.randn(10, 64), "fc8.bias": torch.randn(10)})
    tv_file = tmp_path / "vgg16.pth"
    torch.save(paper_to_torchvision_vgg16(paper), tv_file)
    _load_and_compare(model, tv_file, [
        ("backbone.conv1_1.weight", "features.0.weight"),
        ("backbone.conv3_1.weight", "features.10.weight"),
        ("backbone.conv5_3.bias", "features.28.bias"),
        ("roi_heads.box_head.fc6.weight", "classifier.0.weight"),
        ("roi_heads.box_head.fc7.bias", "classifier.3.bias")])


def test_c4_head_for_basic_block_resnets_and_fpn_backbone():
    model = build_model(c4_cfg(builtin=False, depth=34))
    assert model.roi_heads.res5[0].out_channels == 512  # BasicBlock res5: the stock head cannot
    assert model.roi_heads.box_predictor.cls_score.in_features == 512
    cfg = get_detection_cfg(opts=[
        "MODEL.BACKBONE.NAME", "build_paper_resnet_fpn_backbone", "MODEL.PAPER_RESNET.DEPTH", 50,
        "MODEL.PAPER_RESNET.OUT_FEATURES", ["res2", "res3", "res4", "res5"],
        "MODEL.FPN.IN_FEATURES", ["res2", "res3", "res4", "res5"]])
    fpn = build_paper_resnet_fpn_backbone(cfg, ShapeSpec(channels=3))
    with torch.no_grad():
        out = fpn(torch.randn(1, 3, 64, 96))
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "p2": (256, 16, 24), "p3": (256, 8, 12), "p4": (256, 4, 6), "p5": (256, 2, 3), "p6": (256, 1, 2)}


def test_add_paper_resnet_config_is_idempotent():
    cfg = get_detection_cfg(opts=["MODEL.PAPER_RESNET.DEPTH", 50])
    add_paper_resnet_config(cfg)
    assert cfg.MODEL.PAPER_RESNET.DEPTH == 50 and cfg.MODEL.VGG16.FC_DIM == 4096
    assert cfg.MODEL.PAPER_RESNET.SHORTCUT == "B" and cfg.MODEL.PAPER_RESNET.NORM == "FrozenBN"
