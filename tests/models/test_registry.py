"""The model registry (``create_model``, ``list_models``): every registered model trains, and bad
names and options list the choices."""
import pytest
import torch
from torch import nn

from resnet_backbone import build_resnet, create_model, list_models


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


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
