"""The paper's networks, exact: every registered model trains, the shortcut options and stride
placement of Sec. 3.3 / Table 1, plain counterparts, any input size, clear errors."""
import pytest
import torch
from torch import nn

from resnet_backbone import build_resnet, create_model, list_models
from resnet_backbone.models.analysis import count_parameters
from resnet_backbone.models.blocks import BasicBlock, BottleneckBlock
from resnet_backbone.models.layers import ConvNorm, ZeroPadShortcut
from resnet_backbone.models.vgg import VGG16


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def blocks_of(model: nn.Module):
    return [m for m in model.modules() if isinstance(m, (BasicBlock, BottleneckBlock))]


@pytest.mark.parametrize("name", list_models())
def test_every_model_takes_one_sgd_step(name):
    """Forward, backward and one SGD step on a batch of 2 at 32x32 (cifar_resnet1202 included:
    1202 layers train on CPU); every parameter gets a finite gradient and the weights move."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([1, 4])
    logits = model(images)
    assert logits.shape == (2, 5)
    loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    params = [p for p in model.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
    first = model.linear if hasattr(model, "linear") else model.fc8
    before = first.weight.detach().clone()
    torch.optim.SGD(params, lr=0.1).step()
    assert not torch.equal(first.weight, before)


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


def test_bad_names_and_options_list_the_choices():
    with pytest.raises(ValueError, match="resnet50"):
        create_model("resnet51")
    with pytest.raises(ValueError, match="'A'"):
        create_model("resnet34", shortcut="D")
    with pytest.raises(ValueError, match="'FrozenBN'"):
        create_model("resnet18", norm="batchnorm")
    with pytest.raises(ValueError, match="num_classes"):
        create_model("cifar_resnet20", stride_in_1x1=False)  # CIFAR nets have no bottleneck
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        build_resnet(51)
    with pytest.raises(ValueError, match="6n\\+2"):
        build_resnet(21, cifar=True)


def test_stride_placement_of_the_bottleneck():
    """Paper / MSRA: conv3_1's stride 2 is in the first 1x1 conv; torchvision: in the 3x3."""
    paper = create_model("resnet50").res3[0]
    assert (paper.conv1.stride, paper.conv2.stride) == ((2, 2), (1, 1))
    v15 = create_model("resnet50", stride_in_1x1=False).res3[0]
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    for block in (paper, v15):
        assert block.shortcut.stride == (2, 2) and block.conv3.stride == (1, 1)
    x = torch.randn(1, 256, 8, 8)
    assert paper.eval()(x).shape == v15.eval()(x).shape == (1, 512, 4, 4)


def test_option_a_resnet34_has_exactly_the_params_of_plain34():
    resnet, plain = create_model("resnet34", shortcut="A"), create_model("plain34")
    assert count_parameters(resnet) == count_parameters(plain)
    assert [n for n, _ in resnet.named_parameters()] == [n for n, _ in plain.named_parameters()]
    for net in (plain, create_model("plain18"), create_model("cifar_plain20")):
        assert all(not b.residual and b.shortcut is None for b in blocks_of(net))
        assert not any(isinstance(m, ZeroPadShortcut) for m in net.modules())
        assert not any("shortcut" in name for name in net.state_dict())


def test_plain_block_has_no_identity_path():
    """With its residual function zeroed a residual block passes x on, a plain one outputs 0."""
    x = torch.rand(1, 16, 8, 8)
    for residual in (True, False):
        block = BasicBlock(16, 16, shortcut="A", residual=residual).eval()
        nn.init.zeros_(block.conv2.norm.weight)
        expected = x if residual else torch.zeros_like(x)
        assert torch.allclose(block(x), expected)


def count_shortcuts(model):
    projections = [b for b in blocks_of(model) if isinstance(b.shortcut, ConvNorm)]
    zero_pads = [b for b in blocks_of(model) if isinstance(b.shortcut, ZeroPadShortcut)]
    return len(projections), len(zero_pads), len(blocks_of(model))


def test_shortcut_options_a_b_c():
    """Sec. 3.3 / Table 3: A zero-pads where the shape changes, B projects there, C projects on
    every block; for ResNet-34, C adds thirteen projections to B's three."""
    assert count_shortcuts(create_model("resnet34", shortcut="A")) == (0, 3, 16)
    assert count_shortcuts(create_model("resnet34", shortcut="B")) == (3, 0, 16)
    assert count_shortcuts(create_model("resnet34", shortcut="C")) == (16, 0, 16)
    r50 = blocks_of(create_model("resnet50"))
    assert [isinstance(b.shortcut, ConvNorm) for b in r50] == \
           [b.stride != 1 or b.in_channels != b.out_channels for b in r50]
    assert sum(b.shortcut is not None for b in r50) == 4  # res2.0 widens 64 -> 256, then 3 strides
    assert count_shortcuts(create_model("cifar_resnet20")) == (0, 2, 9)  # option A on CIFAR


def test_option_a_shortcut_subsamples_and_pads_zeros():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()
