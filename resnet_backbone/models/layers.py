"""Small layers shared by every network of the package: norm layers by name, a convolution that
owns its norm layer, the parameter-free option-A shortcut, and the paper's initialisation.

Norm names are detectron2's (``get_norm``), so one config vocabulary serves the classifiers and
the Detectron2 plugin: BN, SyncBN and nnSyncBN (``nn.SyncBatchNorm``), naiveSyncBN, FrozenBN,
GN (32 groups) and "" (no norm).
"""
from typing import Callable, Dict, Optional, Union

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
import torchvision
from torch import nn

NormSpec = Union[str, None]


class FrozenBatchNorm2d(torchvision.ops.FrozenBatchNorm2d):
    """BN whose statistics and affine parameters are fixed buffers: the paper's detectors
    fine-tune with ImageNet BN statistics frozen, and frozen stages use it too.

    torchvision's layer (same buffers; it drops ``num_batches_tracked`` when loading a BN state
    dict) with detectron2's numerics, so the plugin's outputs equal detectron2's builtin ResNet
    bit for bit: without gradients it runs the single fused ``F.batch_norm``; with them,
    ``x * scale + shift`` (autograd then keeps nothing for the statistics). A new layer is the
    exact identity (``running_var = 1 - eps``).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__(num_features, eps)
        self.num_features = num_features
        self.running_var.fill_(1.0 - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.requires_grad:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                training=False, eps=self.eps)
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.to(x.dtype).reshape(1, -1, 1, 1) + shift.to(x.dtype).reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BN (plain, sync or naive-sync) replaced by a FrozenBatchNorm2d
        holding its statistics; children are replaced in place, a BN itself is returned new."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            frozen = cls(module.num_features, module.eps).to(module.running_mean.device)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            converted = cls.convert_frozen_batchnorm(child)
            if converted is not child:
                module.add_module(name, converted)
        return module


def init_bn_statistics_from_data(model: nn.Module, forward: Callable[[], object]) -> nn.Module:
    """Data-dependent *initial* statistics for every BN and FrozenBN of an untrained ``model``:
    each layer's running mean and variance become those of its own input while ``forward()``
    runs once (in network order, so each layer sees already normalised inputs, as in LSUV
    initialisation). Call it in eval mode (BN in training mode normalises with the batch's
    statistics and updates its running ones itself).

    Not ``torch.optim.swa_utils.update_bn``, which re-estimates the BN statistics of a network
    as the average over batches of train-mode passes (the serve benchmark uses it): that leaves
    FrozenBN untouched and normalises with batch statistics while it runs, whereas this sets the
    statistics (FrozenBN's included) from one eval-mode pass, each layer from its own input.

    For timing and export checks of untrained networks, which otherwise normalise nothing: a
    new layer's statistics are the identity, activations grow through the stages (logits of
    1e4 and more), and in a detector the RPN's boxes cover the whole image and NMS leaves one
    proposal, so the RoI head would run on one region instead of hundreds. detectron2's own
    ``FrozenBatchNorm2d`` (builtin backbones) is calibrated too, so two models with the same
    weights stay the same.
    """
    def set_statistics(module: nn.Module, inputs) -> None:
        x = inputs[0].detach().float()
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(set_statistics) for m in model.modules()
               if type(m).__name__ == "FrozenBatchNorm2d"
               or (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats)]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return model


class NaiveSyncBatchNorm(nn.BatchNorm2d):
    """BN whose training statistics are those of the whole batch over all processes: every
    process all-reduces its per-channel mean and mean of squares (equal weights, so every process
    must hold the same batch shape, as in the trainers here), differentiably.

    Unlike ``nn.SyncBatchNorm`` it runs on CPU processes (gloo), so a multi-process CPU run
    normalises exactly as a one-process run of the same global batch. Running statistics get the
    unbiased variance of the whole batch, as ``nn.BatchNorm2d`` in one process.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world == 1 or not self.training:
            return super().forward(x)
        channels = x.shape[1]
        moments = torch.cat([x.mean((0, 2, 3)), (x * x).mean((0, 2, 3))])
        mean, mean_sq = (dist_nn.all_reduce(moments) / world).split(channels)
        var = mean_sq - mean * mean
        if self.track_running_stats:
            count = world * x.numel() // channels
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1 / self.num_batches_tracked.item()
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * count / max(count - 1, 1), momentum)
        scale = self.weight * (var + self.eps).rsqrt()
        shift = self.bias - mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


_NORMS: Dict[str, Callable[[int], nn.Module]] = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "nnSyncBN": nn.SyncBatchNorm,
    "naiveSyncBN": NaiveSyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": lambda channels: nn.GroupNorm(32, channels),
}
#: Norm names accepted everywhere (detectron2's ``get_norm`` names); "" means no norm.
NORMS = (*_NORMS, "")


def check_norm(norm: NormSpec) -> str:
    norm = norm or ""
    if norm not in NORMS:
        raise ValueError(f"Unknown norm {norm!r}; valid choices: {', '.join(repr(n) for n in NORMS)}")
    return norm


def get_norm(norm: NormSpec, channels: int) -> Optional[nn.Module]:
    """The norm layer called ``norm`` for ``channels`` channels; None for ""."""
    norm = check_norm(norm)
    return _NORMS[norm](channels) if norm else None


class ConvNorm(nn.Conv2d):
    """A bias-free convolution followed by its norm layer, stored as the child ``norm``.

    The child's name is detectron2's (``res2.0.conv1.norm``), so checkpoints of detectron2's
    ResNet and the MSRA caffe2 files map onto it name for name. Unlike detectron2's ``Conv2d`` it
    has no per-call guard for empty inputs, so it stays a plain conv + norm for ``torch.compile``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, norm: NormSpec = "BN"):
        norm = check_norm(norm)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=not norm)
        self.norm = get_norm(norm, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv_forward(x, self.weight, self.bias)
        return x if self.norm is None else self.norm(x)


class ZeroPadShortcut(nn.Module):
    """Option A of the paper (Sec. 3.3): identity, subsampled by ``stride`` when the map size
    halves, with zero channels appended when the width grows. It has no parameter."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"Option A cannot reduce channels ({in_channels} -> {out_channels}); "
                             "use shortcut 'B' or 'C'.")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def msra_init_(module: nn.Module) -> None:
    """He et al. (2015) initialisation of every convolution (fan-out, ReLU gain, as the MSRA
    Caffe models, detectron2 and torchvision), unit-scale zero-shift norms, and a N(0, 0.01)
    classifier, as in the paper's Caffe models."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def last_norm(block: nn.Module) -> Optional[nn.Module]:
    """The norm layer of a block's last convolution (zeroed by ``zero_init_residual``)."""
    last = getattr(block, "conv3", None) or getattr(block, "conv2", None)
    return None if last is None else last.norm
