"""tools/plot_curves.py, tools/plot_responses.py (Fig. 7) and tools/export_backbone.py on a tiny
trained run."""
import importlib
from pathlib import Path

import pytest
import torch

from resnet_backbone import build_resnet
from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.engine import ClassificationTrainer

PNG = b"\x89PNG\r\n\x1a\n"


def tool(name):
    """The tool's ``main`` (what ``tools/<name>.py`` and ``resnet-<name>`` run)."""
    return importlib.import_module(f"resnet_backbone.cli.{name}").main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = []
    for name in ("cifar_resnet20", "cifar_plain20"):
        cfg = get_cls_cfg()
        cfg.merge_from_list(["MODEL.NAME", name, "DATASETS.SYNTHETIC.NUM_TRAIN", 64,
                             "DATASETS.SYNTHETIC.NUM_TEST", 16, "SOLVER.IMS_PER_BATCH", 16,
                             "SOLVER.MAX_ITER", 4, "LOG_PERIOD", 1, "TEST.EVAL_PERIOD", 2,
                             "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False,
                             "OUTPUT_DIR", str(tmp_path_factory.mktemp(name))])
        ClassificationTrainer(cfg).train()
        out.append(Path(cfg.OUTPUT_DIR))
    return out


def test_plot_curves_writes_png(runs, tmp_path):
    png = tmp_path / "curves.png"
    assert tool("plot_curves")([*map(str, runs), "--out", str(png), "--train-style", "dashed"]) == 0
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert tool("plot_curves")([str(tmp_path / "missing"), "--out", str(png)]) == 2


def test_plot_responses_writes_png_and_stds(runs, tmp_path):
    png = tmp_path / "fig7.png"
    weights = [str(r / "model_final.pth") for r in runs]
    assert tool("plot_responses")([*weights, "--num-images", "8", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG
    import json
    saved = json.loads(png.with_suffix(".json").read_text())
    assert saved["measured_on"] == "8 synthetic test images"  # Fig. 7 says which images
    stds = saved["stds"]
    assert set(stds) == {"cifar_resnet20", "cifar_plain20"}
    assert all(len(v) == 19 and all(s > 0 for s in v) for v in stds.values())  # 6n+1 = 19 3x3 layers


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
