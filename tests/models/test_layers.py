"""The layers the core owns (no detectron2): FrozenBN (detectron2's numerics, torchvision's
state dict), the naive sync BN, the norm names, and option A's zero-padding shortcut."""
import pytest
import torch
from torch import nn

from resnet_backbone.models.layers import (NORMS, FrozenBatchNorm2d, NaiveSyncBatchNorm,
                                           ZeroPadShortcut, get_norm)

from helpers import randomize_norms_


def test_frozen_bn_is_eval_bn_in_both_branches():
    bn = randomize_norms_(nn.BatchNorm2d(8)).eval()
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and not list(frozen.parameters())
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        expected = bn(x)
        torch.testing.assert_close(frozen(x), expected)  # F.batch_norm, no gradients
    torch.testing.assert_close(frozen(x.requires_grad_()), expected)  # x * scale + shift
    fresh = FrozenBatchNorm2d(8)
    assert torch.equal(fresh(x.detach()), x.detach())  # a new layer is the identity
    fresh.load_state_dict(bn.state_dict())  # a BN state dict (num_batches_tracked) loads
    torch.testing.assert_close(fresh(x.detach()), expected)


def test_freeze_converts_nested_bn_in_place():
    block = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.BatchNorm2d(4)))
    FrozenBatchNorm2d.convert_frozen_batchnorm(block)
    assert isinstance(block[1][0], FrozenBatchNorm2d)


def test_naive_sync_bn_in_one_process_is_bn():
    torch.manual_seed(0)
    naive, bn = NaiveSyncBatchNorm(4), nn.BatchNorm2d(4)
    x = torch.randn(3, 4, 6, 6)
    torch.testing.assert_close(naive(x), bn(x))
    torch.testing.assert_close(naive.running_var, bn.running_var)


def test_norm_names_are_detectron2s():
    assert set(NORMS) == {"BN", "SyncBN", "nnSyncBN", "naiveSyncBN", "FrozenBN", "GN", ""}
    assert get_norm("", 8) is None and isinstance(get_norm("GN", 64), nn.GroupNorm)
    with pytest.raises(ValueError, match="valid choices"):
        get_norm("LayerNorm", 8)


@pytest.mark.usefixtures("one_thread")  # see conftest.py
def test_option_a_shortcut_subsamples_and_pads_zeros():
    x = torch.randn(2, 16, 8, 8)
    out = ZeroPadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert not out[:, 16:].any()
