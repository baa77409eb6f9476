"""Fig. 7's layer responses (``resnet_backbone.classification.responses``): the standard
deviations of every 3x3 layer's output after BN."""
import math

import torch

from resnet_backbone import build_resnet
from resnet_backbone.classification.responses import layer_response_stds, three_by_three_layers


def test_response_stds_hook_every_3x3_layer_after_bn():
    torch.manual_seed(0)
    model = build_resnet(8, cifar=True, num_classes=10)
    names = [n for n, _ in three_by_three_layers(model)]
    assert names[0] == "stem.conv1" and len(names) == 7  # 6n + 1 3x3 layers, n = 1
    x = torch.randn(6, 3, 16, 16)
    stds = layer_response_stds(model, x, batch_size=4)
    layer = dict(model.named_modules())["res3.0.conv2"]
    captured = []
    h = layer.norm.register_forward_hook(lambda m, i, o: captured.append(o.clone()))  # the block adds in place
    model.eval()
    with torch.no_grad():
        model(x)
    h.remove()
    direct = captured[0].permute(1, 0, 2, 3).flatten(1).std(1, unbiased=False).mean().item()
    assert math.isclose(dict(stds)["res3.0.conv2"], direct, rel_tol=1e-5)

