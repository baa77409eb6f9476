"""The networks work where people plug backbones in, called as those tools' users call them:
torchvision's ``get_graph_node_names`` / ``create_feature_extractor`` (torch.fx) on one network
of each kind of the registry (basic and bottleneck blocks, plain and residual, ImageNet and CIFAR
stems, VGG-16; the deeper ones stack the same modules, and tracing ResNet-1202 takes a minute),
with the stage maps equal to the network's own and the clear error for a bad input shape kept
inside the traced graph."""
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

from resnet_backbone import create_model, list_models


def _input(name: str) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32) if name.startswith("cifar_") else torch.randn(2, 3, 64, 64)


KINDS = ["resnet18", "resnet50", "plain18", "vgg16", "cifar_resnet20", "cifar_plain20"]


def test_every_kind_of_network_is_covered():
    assert {n.rstrip("0123456789") for n in list_models()} == {n.rstrip("0123456789") for n in KINDS}


@pytest.mark.parametrize("name", KINDS)
def test_create_feature_extractor_returns_the_networks_own_maps(name):
    torch.manual_seed(0)
    # training mode: BN normalises with the batch's statistics, so the untrained plain nets'
    # maps stay finite (eval mode at initial statistics overflows them); VGG's dropout: eval
    model = create_model(name).train(name != "vgg16")
    train_nodes, eval_nodes = get_graph_node_names(model)
    assert train_nodes and eval_nodes[-1] in ("linear", "fc8"), eval_nodes[-3:]
    x = _input(name)
    if name == "vgg16":  # conv5_3's ReLU: the node before pool5
        conv5_3 = eval_nodes[max(i for i, n in enumerate(eval_nodes) if n.startswith("max_pool2d")) - 1]
        extractor = create_feature_extractor(model, {conv5_3: "conv5_3", "fc8": "logits"})
        with torch.no_grad():
            out = extractor(x)
            assert torch.allclose(out["conv5_3"], model.conv_blocks(x)["conv5_3"], atol=1e-5)
            assert torch.allclose(out["logits"], model(x), atol=1e-5)
        return
    last = model.stage_names[-1]  # res5 (ImageNet) / res4 (CIFAR): a module name, as users give "layer4"
    extractor = create_feature_extractor(model, {last: "last", "linear": "logits"})
    with torch.no_grad():
        out = extractor(x)
        assert torch.allclose(out["last"], model.forward_features(x), atol=1e-5)
        assert torch.allclose(out["logits"], model(x), atol=1e-5)
    assert torch.isfinite(out["logits"]).all()
    with pytest.raises(ValueError, match=r"takes \(N, C, H, W\) inputs; got shape \[3, "):
        extractor(x[0])
