"""tools/export_backbone.py on a tiny trained run."""
import torch

from resnet_backbone import build_resnet
from resnet_backbone.checkpoint import load_checkpoint_file

from helpers import tool_main as tool


def test_export_backbone_loads_strictly_into_build_resnet(runs, tmp_path):
    out = tmp_path / "backbone.pth"
    assert tool("export_backbone")([str(runs[0] / "model_final.pth"), str(out)]) == 0
    ckpt = load_checkpoint_file(out)
    assert ckpt["matching_heuristics"] is True and ckpt["meta"]["depth"] == 20
    assert not any(k.startswith("linear.") for k in ckpt["model"])
    backbone = build_resnet(20, cifar=True, num_classes=None)
    backbone.load_state_dict(ckpt["model"], strict=True)
    trained = load_checkpoint_file(runs[0] / "model_final.pth")["model"]
    assert torch.equal(backbone.state_dict()["res4.2.conv2.weight"], trained["res4.2.conv2.weight"])
