"""Export a classifier for deployment, and check every export against eager PyTorch.

Three formats, each run on a sample input once written:

* ``onnx``: ``torch.onnx.export`` with a dynamic batch, checked in ONNX Runtime. The dynamo
  exporter is tried first, the TorchScript-based one if dynamo fails or misses the tolerance;
  the report says which one passed. Needs the ``[onnx]`` extra (onnx, onnxruntime, onnxscript).
* ``torchscript``: ``torch.jit.script`` (every network of the package is scriptable; synchronised
  BN is swapped for the equivalent FrozenBN first, see ``deployable``), ``torch.jit.trace`` for
  a model that is not.
* ``export``: a ``torch.export`` program (``.pt2``) with a dynamic batch.

Tolerance, fp32: the largest difference from eager at most ``1e-4`` of the range of the eager
logits. (An untrained ResNet-152 whose residual branches all have unit-scale outputs misses it:
it amplifies fp32 rounding so much that eager PyTorch differs from itself by 2e-4 to 4e-4 of the
range between memory formats. Trained networks, whose branches end in small BN weights, do not.)
The detectors' export is ``resnet_backbone.detection.export``.
"""
import copy
import importlib.util
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .models.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm

#: Formats ``export_classifier`` writes, with their file extensions.
FORMATS = {"onnx": ".onnx", "torchscript": ".ts", "export": ".pt2"}
#: fp32 agreement required: max |export - eager| <= RELATIVE_TOLERANCE * range(eager logits).
RELATIVE_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What was written and how close it runs to eager PyTorch on the sample input."""

    path: str
    format: str
    method: str
    max_abs_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.path}: {self.format} ({self.method}), max |export - eager| = "
                f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}): {verdict}")


def onnx_available() -> bool:
    """Whether the ``[onnx]`` extra (onnx and onnxruntime) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def require_onnx() -> None:
    if not onnx_available():
        raise ValueError("ONNX export needs onnx and onnxruntime: pip install "
                         "'resnet_backbone[onnx]' (or choose --format torchscript / export)")


def onnx_feeds(session, inputs: Sequence[torch.Tensor]) -> Dict[str, np.ndarray]:
    """An ONNX Runtime session's input feed: its inputs, in order, as numpy arrays."""
    return {arg.name: x.detach().cpu().numpy() for arg, x in zip(session.get_inputs(), inputs)}


def run_onnx(path: str, *inputs: torch.Tensor) -> List[torch.Tensor]:
    """The outputs of an ONNX file for ``inputs``, from ONNX Runtime on the CPU."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [torch.from_numpy(out) for out in session.run(None, onnx_feeds(session, inputs))]


def load_torchscript(path: str, extra_files: Optional[Dict[str, str]] = None
                     ) -> torch.jit.ScriptModule:
    """``torch.jit.load`` without its deprecation warning (torch >= 2.10 deprecates TorchScript;
    the file format is what serving stacks such as TorchServe and LibTorch still read).
    ``extra_files`` (name -> "") is filled with the contents of the file's extra files."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch.jit.load` is deprecated", category=FutureWarning)
        return torch.jit.load(path, _extra_files=extra_files if extra_files is not None else {})


def _difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def _export_onnx_with(method: str, model: nn.Module, sample: torch.Tensor, path: str) -> None:
    kwargs = dict(input_names=["images"], output_names=["logits"])
    if method == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        torch.onnx.export(model, (sample,), path, dynamo=True, dynamic_shapes={"x": {0: batch}},
                          external_data=False, verbose=False, **kwargs)
    else:
        torch.onnx.export(model, (sample,), path, dynamo=False, opset_version=17,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, **kwargs)


def deployable(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for export: eval mode, CPU, fp32, and every synchronised BN
    (``nn.SyncBatchNorm``, ``NaiveSyncBatchNorm``: their forward calls torch.distributed, which
    no exporter compiles) replaced by a ``FrozenBatchNorm2d`` with its statistics, which computes
    the same in eval mode."""
    model = copy.deepcopy(model).eval().cpu().float()

    def replace_sync_bn(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, (nn.SyncBatchNorm, NaiveSyncBatchNorm)):
                module.add_module(name, FrozenBatchNorm2d.convert_frozen_batchnorm(child))
            else:
                replace_sync_bn(child)
    replace_sync_bn(model)
    return model


def export_classifier(model: nn.Module, path: str, fmt: str, *, input_size: int = 224,
                      batch: int = 2, sample: Optional[torch.Tensor] = None) -> ExportReport:
    """Write ``model`` (eval mode, CPU, fp32) to ``path`` in ``fmt`` (``FORMATS``) and check it
    on ``sample`` (default: a random batch); the report holds the largest difference."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    model = deployable(model)
    if sample is None:
        sample = torch.randn(batch, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    # a batch of another size than the one exported with checks that the batch is dynamic
    check = torch.cat([sample, sample[:1]])
    with torch.no_grad():
        expected = model(check)
    tolerance = RELATIVE_TOLERANCE * (expected.max() - expected.min()).item()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    report = None
    for method, write, run in _writers(fmt, model, sample, path):
        try:
            write()
            got = run(check)
        except Exception as e:  # an exporter that cannot handle the model: try the next one
            last_error = e
            continue
        report = ExportReport(path, fmt, method, _difference(got, expected), tolerance)
        if report.ok:
            return report
    if report is None:
        raise RuntimeError(f"every {fmt} exporter failed on {type(model).__name__}: "
                           f"{type(last_error).__name__}: {last_error}") from last_error
    return report


def _writers(fmt: str, model: nn.Module, sample: torch.Tensor, path: str):
    """(method, write(), run(x) -> logits) in the order they are tried."""
    if fmt == "onnx":
        require_onnx()
        for method in ("dynamo", "torchscript-based"):
            yield (method, lambda m=method: _export_onnx_with(m, model, sample, path),
                   lambda x: run_onnx(path, x)[0])
    elif fmt == "torchscript":
        def load_and_run(x):
            return load_torchscript(path)(x)
        yield "script", lambda: torch.jit.script(model).save(path), load_and_run
        yield "trace", lambda: torch.jit.trace(model, sample).save(path), load_and_run
    else:
        def write_program():
            dim = torch.export.Dim("batch", min=1, max=1024)
            program = torch.export.export(model, (sample,), dynamic_shapes={"x": {0: dim}})
            torch.export.save(program, path)
        yield "torch.export", write_program, lambda x: torch.export.load(path).module()(x)
