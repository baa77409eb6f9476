"""Classifier export (``resnet_backbone.export``, ``resnet-export-model``): ONNX in ONNX Runtime,
TorchScript and ``torch.export`` programs match eager PyTorch within 1e-4 of the logits' range,
for every ImageNet depth of Table 1, the plain nets, the CIFAR nets with option A and VGG-16,
with a batch size other than the one exported."""
import importlib.util

import pytest
import torch

from resnet_backbone import create_model
from resnet_backbone.cli.export_model import main as export_model
from resnet_backbone.export import FORMATS, export_classifier
from resnet_backbone.models.blocks import BasicBlock, BottleneckBlock
from resnet_backbone.models.layers import init_bn_statistics_from_data, last_norm

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")


def calibrated(name: str, size: int):
    """The untrained network made to behave like a trained one: BN statistics taken from data
    (without them nothing is normalised and a deep net's logits reach 1e4), and each residual
    branch's last BN weight at 0.2, as in trained ResNets. With unit-scale branches an untrained
    ResNet-152 amplifies fp32 rounding so much that eager PyTorch differs from itself by 2e-4 to
    4e-4 of its logits' range between memory formats, and ONNX Runtime by as much."""
    model = create_model(name).eval()
    x = torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(1))
    init_bn_statistics_from_data(model, lambda: model(x))
    for block in model.modules():
        if isinstance(block, (BasicBlock, BottleneckBlock)) and block.residual:
            last_norm(block).weight.data.mul_(0.2)
    return model


@needs_onnx
@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                                  "plain18", "cifar_resnet20", "cifar_plain20", "vgg16"])
def test_onnx_export_matches_eager(name, tmp_path):
    size = 32 if name.startswith("cifar") else 64
    report = export_classifier(calibrated(name, size), str(tmp_path / f"{name}.onnx"), "onnx",
                               input_size=size)
    # measured (2026-11-23, AMD EPYC): 1.7e-7 (ResNet-20) to 3.8e-7 (ResNet-152) of the
    # logits' range, two seeds (bound 1e-4)
    assert report.ok, str(report)
    assert report.method in ("dynamo", "torchscript-based")


@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_torchscript_and_torch_export_match_eager(fmt, tmp_path):
    report = export_classifier(calibrated("resnet50", 64), str(tmp_path / f"r50{FORMATS[fmt]}"),
                               fmt, input_size=64)
    assert report.ok and report.max_abs_diff == 0.0, str(report)  # the same kernels: exact
    assert report.method == {"torchscript": "script", "export": "torch.export"}[fmt]


@needs_onnx
def test_tool_exports_a_train_cls_checkpoint(tmp_path, capsys):
    """The checkpoint records its network (here option-A ResNet-20): no model name needed."""
    from resnet_backbone.classification.config import get_cls_cfg
    from resnet_backbone.classification.engine import ClassificationTrainer
    cfg = get_cls_cfg()
    cfg.merge_from_list(["DATASETS.SYNTHETIC.NUM_TRAIN", 64, "DATASETS.SYNTHETIC.NUM_TEST", 16,
                         "SOLVER.IMS_PER_BATCH", 16, "SOLVER.MAX_ITER", 3, "TEST.EVAL_PERIOD", 3,
                         "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False,
                         "OUTPUT_DIR", str(tmp_path / "run")])
    ClassificationTrainer(cfg).train()
    weights = str(tmp_path / "run" / "model_final.pth")
    assert export_model(["--weights", weights, "--format", "onnx", "torchscript",
                         "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == 2, out
    assert (tmp_path / "out" / "cifar_resnet20.onnx").is_file()
    assert (tmp_path / "out" / "cifar_resnet20.ts").is_file()


def test_tool_user_errors_are_one_line(tmp_path, capsys):
    assert export_model(["--model", "resnet51", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown model 'resnet51'") and "\n" not in err
    assert export_model(["--model", "resnet18", "--weights", str(tmp_path / "none.pth"),
                         "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_onnx_without_the_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr("resnet_backbone.export.onnx_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install 'resnet_backbone\[onnx\]'"):
        export_classifier(create_model("cifar_resnet20"), str(tmp_path / "m.onnx"), "onnx",
                          input_size=32)
