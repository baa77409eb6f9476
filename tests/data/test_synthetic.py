"""The synthetic data (``resnet_backbone.data.synthetic``): deterministic and balanced images."""
import torch

from resnet_backbone.data.synthetic import make_synthetic


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(200, seed=5), make_synthetic(200, seed=5)
    assert torch.equal(a.images, b.images) and a.images.shape == (200, 3, 32, 32)
    assert a.images.dtype == torch.uint8 and len(set(a.labels.tolist())) == 10
