"""The paper's networks (``resnet_backbone.models.resnet``), exact: any input size, plain
counterparts with exactly the parameters of option-A ResNets; and every network of the package
compiles with ``torch.jit.script``, as torchvision's ResNets do, the scripted module computing
exactly what the eager one does. (Synchronised BN is the one documented exception:
tests/test_export.py, ``deployable``.)"""
import pytest
import torch

from resnet_backbone import build_resnet, create_model
from resnet_backbone.models.analysis import count_parameters
from resnet_backbone.models.layers import ZeroPadShortcut
from resnet_backbone.models.resnet import ResNet
from resnet_backbone.models.vgg import VGG16

from helpers import blocks_of, randomize_norms_, script


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_any_input_size_works():
    """Fully convolutional: odd sizes give logits, and backbone maps of size ceil(n / stride)."""
    x = torch.randn(1, 3, 97, 131)
    for name in ("resnet18", "resnet50", "plain18", "cifar_resnet20", "cifar_plain20"):
        assert create_model(name, num_classes=7).eval()(x).shape == (1, 7)
    backbone = build_resnet(50, out_features=["stem", "res2", "res3", "res4", "res5"]).eval()
    outputs = backbone(x)
    for feature, spec in backbone.output_shape().items():
        expected = (-(-97 // spec.stride), -(-131 // spec.stride))
        assert outputs[feature].shape[1:] == (spec.channels, *expected), feature
    assert VGG16(ceil_mode=True)(x)["conv5_3"].shape == (1, 512, 7, 9)


def test_option_a_resnet34_has_exactly_the_params_of_plain34():
    resnet, plain = create_model("resnet34", shortcut="A"), create_model("plain34")
    assert count_parameters(resnet) == count_parameters(plain)
    assert [n for n, _ in resnet.named_parameters()] == [n for n, _ in plain.named_parameters()]
    for net in (plain, create_model("plain18"), create_model("cifar_plain20")):
        assert all(not b.residual and b.shortcut is None for b in blocks_of(net))
        assert not any(isinstance(m, ZeroPadShortcut) for m in net.modules())
        assert not any("shortcut" in name for name in net.state_dict())


def assert_scripts_exactly(model, x):
    model = randomize_norms_(model).eval()
    scripted = script(model)
    with torch.no_grad():
        expected, got = model(x), scripted(x)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
    else:
        assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "plain34", "cifar_resnet20",
                                  "cifar_plain20", "vgg16"])
def test_classifiers_script(name, one_thread):
    size = 32 if name.startswith("cifar") else 64
    assert_scripts_exactly(create_model(name), torch.randn(2, 3, size, size))


@pytest.mark.parametrize("options", [dict(shortcut="A"), dict(shortcut="C"), dict(norm="GN"),
                                     dict(norm="FrozenBN"), dict(norm=""), dict(stride_in_1x1=False)])
def test_every_block_option_scripts(options, one_thread):
    assert_scripts_exactly(build_resnet(50, num_classes=10, **options), torch.randn(1, 3, 64, 64))


def test_backbones_with_several_outputs_script(one_thread):
    x = torch.randn(1, 3, 64, 64)
    assert_scripts_exactly(ResNet(50, out_features=["stem", "res2", "res4"], freeze_at=2,
                                  norm="FrozenBN"), x)
    assert_scripts_exactly(VGG16(out_features=["conv3_3", "conv5_3"], freeze_at=2), x)
