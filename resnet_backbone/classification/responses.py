"""Fig. 7: standard deviations of layer responses, i.e. of the output of every 3x3 layer after
BN and before the nonlinearity (ReLU or addition), measured on test images in eval mode.

The std of a layer is the std of each channel's responses over images and positions, averaged
over the layer's channels.
"""
from typing import List, Tuple

import torch
from torch import nn

from ..models.layers import ConvNorm


def three_by_three_layers(model: nn.Module) -> List[Tuple[str, ConvNorm]]:
    """Every 3x3 ConvNorm with a norm layer, in network order (stem first)."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, ConvNorm) and tuple(m.kernel_size) == (3, 3) and m.norm is not None]


@torch.no_grad()
def layer_response_stds(model: nn.Module, images: torch.Tensor, batch_size: int = 100) -> List[Tuple[str, float]]:
    """[(layer name, response std)] of every 3x3 layer over ``images`` (normalised (N, 3, H, W))."""
    layers = three_by_three_layers(model)
    if not layers:
        raise ValueError("the model has no 3x3 convolution followed by a norm layer")
    sums = {name: None for name, _ in layers}
    hooks = []

    def hook_for(name):
        def hook(_module, _inputs, out):
            out = out.double()
            stats = torch.stack([out.sum((0, 2, 3)), (out * out).sum((0, 2, 3)),
                                 torch.full((out.shape[1],), out.numel() / out.shape[1],
                                            dtype=torch.float64, device=out.device)])
            sums[name] = stats if sums[name] is None else sums[name] + stats
        return hook

    for name, layer in layers:
        hooks.append(layer.norm.register_forward_hook(hook_for(name)))
    was_training = model.training
    model.eval()
    try:
        for chunk in images.split(batch_size):
            model(chunk)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    result = []
    for name, _ in layers:
        s, ss, n = sums[name]
        var = (ss / n - (s / n) ** 2).clamp(min=0)
        result.append((name, var.sqrt().mean().item()))
    return result
