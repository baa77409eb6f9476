"""What the core shares with detectron2 without importing it: detectron2's ResNet has our
parameter names and, with the same weights, our outputs; detector checkpoints only add prefixes;
our caffe2 blob renaming gives detectron2's names; BN folding works on detectron2's FrozenBN."""
import numpy as np
import torch
from detectron2.checkpoint.c2_model_loading import convert_basic_c2_names
from detectron2.layers import ShapeSpec

from resnet_backbone import build_resnet, create_model
from resnet_backbone import convert

from resnet_backbone.fast import fold_frozen_bn

from helpers import assert_float_close, assert_same_state, randomize_norms_, rel_err


def test_detectron2_resnet_names_are_ours():
    """detectron2's own ResNet has our parameter names and, with the same weights, our outputs;
    detector checkpoints only add prefixes, which the converters strip and add."""
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import build_resnet_backbone

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    d2 = randomize_norms_(build_resnet_backbone(cfg, ShapeSpec(channels=3))).eval()
    ours = build_resnet(50, out_features=cfg.MODEL.RESNETS.OUT_FEATURES).eval()
    assert list(d2.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(convert.detectron2_resnet_to_paper(d2.state_dict(), prefix=""))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_float_close(ours(x)["res5"], d2(x)["res5"])

    sd = ours.state_dict()
    fpn = {**convert.paper_to_detectron2_resnet(sd, prefix="backbone.bottom_up."),
           "backbone.fpn_lateral2.weight": torch.zeros(1), "roi_heads.box_head.fc1.weight": torch.zeros(1)}
    assert_same_state(convert.detectron2_resnet_to_paper(fpn), sd)
    c4 = {("roi_heads." + k if k.startswith("res5.") else "backbone." + k): v for k, v in sd.items()}
    c4["proposal_generator.rpn_head.conv.weight"] = torch.zeros(1)
    assert_same_state(convert.detectron2_resnet_to_paper(c4), sd)
    classifier = create_model("resnet18").state_dict()
    assert not any(k.startswith("linear.") for k in convert.paper_to_detectron2_resnet(classifier))


def test_caffe2_names_are_detectron2s():
    """Every blob of an MSRA-style R-101 / R-18 file (and the GN and unfolded-BN variants) gets
    the name detectron2's caffe2 loader gives it (``fc1000`` -> ``linear`` is ours: detectron2
    leaves the classifier out)."""
    names = []
    for depth in (18, 101):
        sd = create_model(f"resnet{depth}").state_dict()
        blobs = convert.paper_to_caffe2_resnet(sd, fold_bn=False)
        names += list(blobs) + [k.replace("_bn_", "_gn_") for k in blobs if k.endswith(("_bn_s", "_bn_b"))]
    theirs = convert_basic_c2_names(names)
    ours = [convert.caffe2_name_to_paper(k) for k in names]
    expected = [t.replace("fc1000.", "linear.", 1) if t.startswith("fc1000.") else t for t in theirs]
    assert ours == expected
    assert convert.caffe2_name_to_paper("res2_0_branch2a_bn_x") is None
    assert convert.caffe2_resnet_to_paper({"conv1_w": np.zeros((64, 3, 7, 7), np.float32)})[
        "stem.conv1.weight"].shape == torch.Size([64, 3, 7, 7])


def test_fold_bn_detectron2_backbone_frozen_bn():
    """Our C4 backbone (FrozenBN) and detectron2's own builtin backbone both fold."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_resnet_backbone
    torch.manual_seed(0)
    ours = randomize_norms_(build_resnet(50, norm="FrozenBN", out_features=["res4"],
                                         freeze_at=2)).eval()
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.NORM = 50, "FrozenBN"
    peer = randomize_norms_(build_resnet_backbone(cfg, ShapeSpec(channels=3))).eval()
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    for model in (ours, peer):
        folded = fold_frozen_bn(model)
        assert not any(type(m).__name__ == "FrozenBatchNorm2d" for m in folded.modules())
        with torch.no_grad():
            assert rel_err(folded(x)["res4"], model(x)["res4"]) < 1e-4
