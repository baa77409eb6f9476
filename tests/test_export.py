"""Classifier export (``resnet_backbone.export``): ONNX in ONNX Runtime, TorchScript and
``torch.export`` programs match eager PyTorch within 1e-4 of the logits' range, for every
ImageNet depth of Table 1, the plain nets, the CIFAR nets with option A and VGG-16, with a batch
size other than the one exported; synchronised BN, which does not script, made ``deployable``.
(The command line, ``resnet-export-model``: tests/cli/test_export_model.py.)"""
import pytest
import torch

from resnet_backbone import build_resnet, create_model
from resnet_backbone.export import FORMATS, deployable, export_classifier
from resnet_backbone.models.blocks import BasicBlock, BottleneckBlock
from resnet_backbone.models.layers import init_bn_statistics_from_data, last_norm

from helpers import needs_onnx, randomize_norms_, script


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


def test_onnx_without_the_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr("resnet_backbone.export.onnx_available", lambda: False)
    with pytest.raises(ValueError, match=r"pip install 'resnet_backbone\[onnx\]'"):
        export_classifier(create_model("cifar_resnet20"), str(tmp_path / "m.onnx"), "onnx",
                          input_size=32)


@pytest.mark.parametrize("norm", ["SyncBN", "naiveSyncBN"])
def test_synchronised_bn_is_the_documented_exception(norm, one_thread):
    """Scripting fails on the layer itself (a torch.distributed call); ``deployable`` swaps it
    for FrozenBN with the same statistics, which scripts and computes the same in eval mode."""
    model = randomize_norms_(build_resnet(18, num_classes=10, norm=norm)).eval()
    with pytest.raises(Exception):
        script(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(script(deployable(model))(x), model(x))
