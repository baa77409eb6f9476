"""The residual and plain blocks (``resnet_backbone.models.blocks``): the stride placement of the
bottleneck and the shortcut options A, B, C of Sec. 3.3 / Table 3; a plain block has no identity
path."""
import pytest
import torch
from torch import nn

from resnet_backbone import create_model
from resnet_backbone.models.blocks import BasicBlock
from resnet_backbone.models.layers import ConvNorm, ZeroPadShortcut

from helpers import blocks_of


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


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
