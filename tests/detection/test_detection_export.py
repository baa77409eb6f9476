"""Detector export (``resnet_backbone.detection.export``, ``resnet-export-model --config-file``):
the whole Faster R-CNN (normalisation, backbone, RPN, RoI head, NMS) as one traced graph, in
ONNX Runtime and TorchScript, gives the eager detections (same classes, scores within 1e-3,
boxes within 0.5 px) on the sample image and on an image of another size; and the detectron2
backbones of the plugin compile with ``torch.jit.script``."""
import importlib.util
import re

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model

from resnet_backbone.cli.export_model import main as export_model
from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.export import sample_image
from resnet_backbone.exported_detector import DetectorContract
from resnet_backbone.models.layers import init_bn_statistics_from_data
from resnet_backbone.recipes import get_config_file
from helpers import randomize_norms_

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="the [onnx] extra (onnx, onnxruntime) is not installed")
#: A small test size, 100 proposals, and every detection kept (an untrained head scores every
#: class near 1/(classes + 1), under the 0.05 threshold): 100 detections to compare.
SMALL = ["INPUT.MIN_SIZE_TEST", "256", "INPUT.MAX_SIZE_TEST", "320",
         "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.mark.parametrize("backbone", ["build_paper_resnet", "build_vgg16_backbone"])
def test_plugin_backbones_script(backbone, one_thread):
    cfg = get_detection_cfg(get_config_file("detection/faster_rcnn_R_101_C4_voc0712.yaml"),
                            ["MODEL.BACKBONE.NAME", backbone])
    model = randomize_norms_(build_backbone(cfg, ShapeSpec(channels=3))).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, got = model(x), scripted(x)
    assert list(got) == list(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


@needs_onnx
@pytest.mark.slow
@pytest.mark.parametrize("config", ["faster_rcnn_R_101_C4_voc0712", "faster_rcnn_VGG16_voc0712"])
def test_detector_exports_match_eager(config, tmp_path, capsys):
    """Weights: the untrained detector with BN statistics from the sample image (new FrozenBN
    layers normalise nothing and the RPN then collapses to one proposal), saved as a checkpoint
    and loaded by the tool."""
    config_file = get_config_file(f"detection/{config}.yaml")
    cfg = get_detection_cfg(config_file, SMALL + ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    image = sample_image(DetectorContract(cfg.INPUT.FORMAT, 256, 320))
    init_bn_statistics_from_data(model, lambda: model([{"image": image}]))
    weights = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, weights)

    status = export_model(["--config-file", config_file, "--weights", str(weights), "--format",
                           "onnx", "torchscript", "--output-dir", str(tmp_path), *SMALL])
    out = capsys.readouterr().out
    # measured (2026-11-23, AMD EPYC), 200 detections on two images: R-101-C4 (RoI max pooling)
    # boxes within 0.34 px in ONNX Runtime, 0 in TorchScript; VGG-16 within 5e-5 px; scores
    # within 2e-5 (bounds 0.5 px, 1e-3). Unmatched (near-tied proposals of the untrained RPN):
    # 0 on AMD EPYC; 2 of 200 in ONNX Runtime R-101-C4 on an Intel Xeon (2026-12-04), 0 in
    # TorchScript (bound 10: UNMATCHED_FRACTION)
    assert status == 0, out
    unmatched = [int(n) for n in re.findall(r"200 detections \(eager 200\), (\d+) without a match", out)]
    assert len(unmatched) == 2 and max(unmatched) <= 10 and out.count(": ok") == 2, out
    assert (tmp_path / f"{config}.onnx").is_file() and (tmp_path / f"{config}.ts").is_file()


@pytest.mark.slow
def test_lazyconfig_detector_exports(tmp_path, capsys):
    """A LazyConfig row exports the same way (``key=value`` overrides; the test size is the
    test mapper's resize)."""
    config_file = get_config_file("detection/faster_rcnn_VGG16_voc0712.py")
    small = ["dataloader.test.mapper.augmentations.0.short_edge_length=256",
             "dataloader.test.mapper.augmentations.0.max_size=320",
             "model.proposal_generator.post_nms_topk=[2000,100]",
             "model.roi_heads.box_predictor.test_score_thresh=0.0"]
    assert export_model(["--config-file", config_file, "--format", "torchscript",
                         "--output-dir", str(tmp_path), *small]) == 0
    out = capsys.readouterr().out
    assert "input (3, H, W) RGB, shorter side 256 (longer at most 320)" in out
    assert re.search(r"200 detections \(eager 200\), [0-9] without a match", out) and ": ok" in out, out


def test_detector_formats_and_files_are_checked(tmp_path, capsys):
    config_file = get_config_file("detection/faster_rcnn_R_101_C4_voc0712.yaml")
    assert export_model(["--config-file", config_file, "--format", "export",
                         "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: detectors export to onnx, torchscript; not export"
    assert export_model(["--config-file", config_file, "--weights", str(tmp_path / "none.pth"),
                         "--output-dir", str(tmp_path)]) == 2
    assert "none.pth: no such file" in capsys.readouterr().err
