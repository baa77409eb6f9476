"""tools/convert_weights.py (resnet-convert-weights): as a user runs it, and in this process."""
import importlib.util

import torch
import torchvision

from resnet_backbone import build_resnet, create_model
from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.cli import convert_weights

from helpers import randomize_norms_, run_tool


def test_convert_weights_tool(tmp_path, capsys):
    """torchvision -> paper (.pth) -> detectron2 (.pkl, read by detectron2's checkpointer) ->
    caffe2 (.pkl); bad input: exit status 2 and a one-line error."""
    tv = randomize_norms_(torchvision.models.resnet18()).eval()
    torch.save({"model": tv.state_dict(), "epoch": torch.tensor(3)}, tmp_path / "tv.pth")
    done = run_tool("convert_weights", "tv.pth", "paper.pth", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "122 tensors (inside 'model'), format torchvision_resnet" in done.stdout
    paper = load_checkpoint_file(tmp_path / "paper.pth")  # {"model": ..., "meta": preprocessing}
    assert paper["meta"]["model_name"] == "resnet18" and paper["meta"]["input_format"] == "RGB"
    ours = create_model("resnet18", stride_in_1x1=paper["meta"]["stride_in_1x1"]).eval()
    ours.load_state_dict(paper["model"], strict=True)

    assert convert_weights.main(["--to", "detectron2", str(tmp_path / "paper.pth"),
                                 str(tmp_path / "d2.pkl")]) == 0
    d2_file = load_checkpoint_file(tmp_path / "d2.pkl")
    assert d2_file["matching_heuristics"] and d2_file["__author__"] == "resnet_backbone"
    if importlib.util.find_spec("detectron2") is not None:  # the suite's environment has it
        from detectron2.checkpoint import DetectionCheckpointer
        backbone = build_resnet(18, out_features=["res5"])
        DetectionCheckpointer(backbone).load(str(tmp_path / "d2.pkl"))
        assert torch.equal(backbone.res4[1].conv2.weight, ours.res4[1].conv2.weight)
        # the paper file's meta is what a detector's config takes from its MODEL.WEIGHTS
        from detectron2.config import get_cfg
        from resnet_backbone.detection import add_paper_resnet_config
        from resnet_backbone.detection.pretrained import apply_weights_meta
        cfg = get_cfg()
        add_paper_resnet_config(cfg)
        cfg.MODEL.BACKBONE.NAME, cfg.MODEL.PAPER_RESNET.DEPTH = "build_paper_resnet", 18
        cfg.MODEL.WEIGHTS = str(tmp_path / "paper.pth")
        apply_weights_meta(cfg)
        assert (cfg.INPUT.FORMAT, cfg.MODEL.PIXEL_STD, cfg.MODEL.PAPER_RESNET.STRIDE_IN_1X1) == \
            ("RGB", [58.395, 57.12, 57.375], False)

    assert convert_weights.main(["--to", "caffe2", str(tmp_path / "paper.pth"),
                                 str(tmp_path / "c2.pkl")]) == 0
    assert "res_conv1_bn_s" in load_checkpoint_file(tmp_path / "c2.pkl")["blobs"]
    capsys.readouterr()
    assert convert_weights.main(["--to", "caffe2", str(tmp_path / "paper.pth"),
                                 str(tmp_path / "c2.pth")]) == 2
    assert capsys.readouterr().err.startswith("error: --to caffe2 writes a .pkl")

    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    bad = run_tool("convert_weights", "--from", "torchvision", "other.pth", "out.pth", cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "out.pth").exists()
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Unrecognised checkpoint format"), bad.stderr
