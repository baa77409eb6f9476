"""Optional inference/training fast paths, each checked against the plain path by the tests.

* ``fold_frozen_bn``: a convolution followed by a FrozenBN (or an eval-mode BN) becomes one
  convolution with a bias (``torch.nn.utils.fusion.fuse_conv_bn_weights``); the network then
  runs one op per layer instead of two.
* ``subsample_strided_1x1``: a strided 1x1 convolution runs as a stride-1 one on the subsampled
  input (the same result and FLOPs; oneDNN runs it faster, cuDNN slower).
* ``to_channels_last``: NHWC weights, so oneDNN / cuDNN pick their channels-last kernels.
* ``autocast_context``: bf16/fp16 autocast where the device supports it (bf16 on CPUs with
  oneDNN bf16 support, bf16/fp16 on GPUs).
* ``maybe_compile``: ``torch.compile`` when it is available.

``optimize_for_inference`` combines them, and ``speed_up_strided_1x1`` applies the one that
also serves training where it helps, with defaults that are the fastest correct choice measured
on our machines (see BENCHMARKS.md).
"""
import contextlib
import copy
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .models.layers import ConvNorm

#: dtype names accepted by ``autocast_context``, the trainers and the benchmark tool.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; valid choices: {', '.join(DTYPES)}")
    return dtype


# ------------------------------------------------------------------------------ BN folding

def _frozen_statistics(norm: nn.Module) -> Optional[Tuple[torch.Tensor, ...]]:
    """(running_mean, running_var, eps, weight, bias) of a norm layer whose output is a fixed
    affine function of its input: any FrozenBatchNorm2d (ours, torchvision's, detectron2's) or
    a BN in eval mode with running statistics; None otherwise."""
    frozen = type(norm).__name__ == "FrozenBatchNorm2d"
    evaluating = (isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training
                  and norm.track_running_stats)
    if not (frozen or evaluating) or getattr(norm, "running_var", None) is None:
        return None
    return norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias


@torch.no_grad()
def fold_frozen_bn(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Fold every ``conv -> norm`` pair (a ``Conv2d`` with a ``norm`` child: our ``ConvNorm`` and
    detectron2's ``Conv2d``) whose norm is FrozenBN or a BN in eval mode into the convolution.

    Returns a copy (the original keeps its state-dict names and loads checkpoints as before)
    unless ``inplace``. The result is for inference: its folded convs no longer hold the norm's
    statistics, so training it would not update them. Norms in training mode (BN of a model not
    put in ``eval()``), GN and SyncBN in training are left as they are.
    """
    if not inplace:
        model = copy.deepcopy(model)
    for module in model.modules():
        norm = getattr(module, "norm", None)
        if not isinstance(module, nn.Conv2d) or not isinstance(norm, nn.Module):
            continue
        stats = _frozen_statistics(norm)
        if stats is None:
            continue
        weight, bias = fuse_conv_bn_weights(module.weight, module.bias, *stats)
        module.weight, module.bias = weight, bias
        module.norm = None
    return model


# ------------------------------------------------------------------- strided 1x1 convolutions

class SubsampledConvNorm(ConvNorm):
    """A strided 1x1 ``ConvNorm`` computed as a stride-1 convolution of the subsampled input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x[:, :, :: self.stride[0], :: self.stride[1]], self.weight, self.bias,
                     groups=self.groups)
        return x if self.norm is None else self.norm(x)


def subsample_strided_1x1(model: nn.Module) -> nn.Module:
    """Make every strided, unpadded 1x1 ``ConvNorm`` of ``model`` a ``SubsampledConvNorm`` (in
    place; parameter names and values are unchanged, so checkpoints load as before)."""
    for module in model.modules():
        if (type(module) is ConvNorm and module.kernel_size == (1, 1)
                and module.stride != (1, 1) and module.padding == (0, 0)):
            module.__class__ = SubsampledConvNorm
    return model


def subsampling_pays_off(device: str, channels_last: bool = False) -> bool:
    """Whether ``subsample_strided_1x1`` speeds a model up where it runs. Measured
    (BENCHMARKS.md, "The strided-1x1 fast path per layout and dtype";
    ``tools/benchmark.py --rows strided_1x1`` checks it on any machine): on CPU in the default
    (NCHW) layout, yes (R-50 training step 1.04x in fp32, 1.08x in bf16, AMD EPYC, torch 2.15;
    2.9x for a 56x56 layer's forward+backward when it was introduced); channels-last, no
    (0.98-0.99x there, and 0.93-0.95x reported for bf16 training on an Intel AMX CPU): oneDNN's
    NHWC kernels stride well themselves. With cuDNN, no (an extra strided copy)."""
    return torch.device(device).type == "cpu" and not channels_last


# ------------------------------------------------------------------ layout, dtype, compile

def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-D weights channels-last (in place). Inputs need not be converted: PyTorch runs a
    convolution channels-last when its weight is, and the layout then flows through the net."""
    return model.to(memory_format=torch.channels_last)


def supports_dtype(device: str, dtype: str) -> bool:
    """Whether autocast to ``dtype`` ('fp32', 'bf16', 'fp16') has fast kernels on ``device``."""
    check_dtype(dtype)
    if dtype == "fp32":
        return True
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and (dtype == "fp16" or torch.cuda.is_bf16_supported())
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    probe = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}[dtype]
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        return False


def autocast_context(device: str, dtype: str = "fp32") -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``; a no-op context for fp32.

    Raises ValueError when the device has no fast kernels for that dtype (e.g. bf16 on a CPU
    without AVX512-BF16/AMX), rather than silently running an emulated, slower path.
    """
    if check_dtype(dtype) == "fp32":
        return contextlib.nullcontext()
    if not supports_dtype(device, dtype):
        raise ValueError(f"{dtype} is not supported on device {device!r} here; use fp32")
    return torch.autocast(torch.device(device).type, dtype=DTYPES[dtype])


def compile_available() -> bool:
    """Whether ``torch.compile`` can run here (dynamo supports this Python and torch build)."""
    try:
        import torch._dynamo  # noqa: F401
        return hasattr(torch, "compile") and torch._dynamo.is_dynamo_supported()
    except Exception:  # an import or platform failure means "not available"
        return False


def maybe_compile(model: nn.Module, enabled: bool, **compile_kwargs) -> nn.Module:
    """``torch.compile(model)`` if ``enabled`` (ValueError if it cannot run here), else
    ``model``."""
    if not enabled:
        return model
    if not compile_available():
        raise ValueError("torch.compile is not available in this environment; use compile=False")
    return torch.compile(model, **compile_kwargs)


class FastInference(nn.Module):
    """Wraps an optimised model: runs its forward under autocast and returns fp32 outputs."""

    def __init__(self, model: nn.Module, device: str, dtype: str):
        super().__init__()
        self.model = model
        self.device_type = torch.device(device).type
        self.dtype = check_dtype(dtype)

    def forward(self, *args, **kwargs):
        with autocast_context(self.device_type, self.dtype):
            out = self.model(*args, **kwargs)
        return _to_float(out) if self.dtype != "fp32" else out


def _to_float(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {k: _to_float(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float(v) for v in out)
    return out


def folding_pays_off(device: str, dtype: str) -> bool:
    """Whether folding BN into the convolutions speeds up inference (measured, BENCHMARKS.md):
    yes on CPU and in fp32 on CUDA; no on CUDA under bf16/fp16 autocast, where the folded bias
    is added by a slower kernel than cuDNN's channels-last BN."""
    return not (torch.device(device).type == "cuda" and check_dtype(dtype) != "fp32")


def _device_of(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return str(param.device) if param is not None else "cpu"


def speed_up_strided_1x1(model: nn.Module, device: Optional[str] = None,
                         channels_last: bool = False) -> nn.Module:
    """``subsample_strided_1x1`` (in place; the model stays trainable) where it pays off on
    ``device`` (default: the model's) in the layout the model will run in
    (``subsampling_pays_off``). The trainers apply it; so does ``optimize_for_inference``."""
    if subsampling_pays_off(device or _device_of(model), channels_last):
        subsample_strided_1x1(model)
    return model


def optimize_for_inference(model: nn.Module, *, fold_bn: Optional[bool] = None,
                           channels_last: Optional[bool] = None, dtype: str = "fp32",
                           compile: bool = False, device: Optional[str] = None) -> nn.Module:
    """An eval-mode copy of ``model`` with the chosen fast paths; the original is untouched.

    Defaults (measured, BENCHMARKS.md): fold BN (fewer ops, same result) except on CUDA with
    bf16/fp16, where PyTorch adds the folded bias with a slower kernel than cuDNN's channels-last
    BN (``None`` = that choice); strided-1x1 subsampling where it pays off (CPU, NCHW); channels-last
    on (``None`` = on); fp32 (bf16 autocast is optional: faster on AVX512-BF16 CPUs and on GPUs
    but only agrees with fp32 to ~1e-2); no ``torch.compile`` (about a minute of compilation on
    2 CPU cores; its speed-up was not measured). ``device`` defaults to the model's.
    """
    check_dtype(dtype)
    device = device or _device_of(model)
    optimized = copy.deepcopy(model).eval()
    if fold_bn is None:
        fold_bn = folding_pays_off(device, dtype)
    if fold_bn:
        optimized = fold_frozen_bn(optimized, inplace=True)
    channels_last = channels_last is None or channels_last
    speed_up_strided_1x1(optimized, device, channels_last)
    if channels_last:
        optimized = to_channels_last(optimized)
    for p in optimized.parameters():
        p.requires_grad_(False)
    optimized = maybe_compile(optimized, compile)
    if dtype != "fp32":
        autocast_context(device, dtype)  # raises now if the device lacks the dtype
        optimized = FastInference(optimized, device, dtype)
    return optimized
