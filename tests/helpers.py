"""Helpers shared by tests of several layers (``import helpers``: tests/ is on sys.path through
its conftest.py)."""
import torch
from torch import nn


def randomize_norms_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics and affine parameters in every BN and FrozenBN (ours, torchvision's,
    detectron2's), so that a mis-mapped, unloaded or badly folded norm layer shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or type(m).__name__ == "FrozenBatchNorm2d":
            n = m.running_mean.numel()
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def assert_same_state(a, b) -> None:
    """Two state dicts (tensors or numpy arrays) with the same names and equal values."""
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k


def assert_float_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding: the same convolutions may run different (equally exact)
    oneDNN algorithms, so deep outputs agree to ~1e-5 of their scale, not bit for bit."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference relative to the reference's largest value. Measured on R-50 with
    ``randomize_norms_`` (2026-11-23, AMD EPYC; AVX-512, AVX2 and one-thread kernels): fp32 fast
    paths at most 7.2e-7 (bound 1e-4); bf16 autocast 0.0035, the bf16 fast path 0.0054 (bound
    5e-2)."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()
