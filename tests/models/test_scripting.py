"""Every network of the package compiles with ``torch.jit.script``, as torchvision's ResNets do,
and the scripted module computes exactly what the eager one does. Synchronised BN is the one
documented exception: its forward calls torch.distributed, so export swaps it for the equivalent
FrozenBN first (``resnet_backbone.export.deployable``)."""
import warnings

import pytest
import torch

from resnet_backbone import build_resnet, create_model
from resnet_backbone.export import deployable
from resnet_backbone.models.resnet import ResNet
from resnet_backbone.models.vgg import VGG16
from helpers import randomize_norms_


def script(model):
    with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.10; users still script
        warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
        return torch.jit.script(model)


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
