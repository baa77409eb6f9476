"""The ``serve`` row of the benchmark: CPU inference of one classifier in every runtime this
package serves it with, on the same input, in the same run (the detector part of the row is
``resnet_backbone.benchmarks.detection.serve_detector_rows``).

Runtimes, each timed with ``Bench.time`` (interleaved, alternating order, median):

* torchvision eager: ``torchvision.models.resnetD`` of the same depth and number of classes
  (its own random weights, BN statistics re-estimated on the calibration images with
  ``torch.optim.swa_utils.update_bn``; the peer of the ratios);
* ours eager: the classifier as the ``classifier`` row runs it;
* ours fast: ``resnet_backbone.fast.optimize_for_inference`` (folded BN, channels-last);
* ONNX Runtime fp32: ``export_classifier(..., "onnx")``'s file in an ``InferenceSession`` on the
  ``CPUExecutionProvider`` (``ORT_SETTINGS``: graph optimisation level ``ORT_ENABLE_ALL``,
  ``intra_op_num_threads`` = torch's thread count, one inter-op thread, sequential execution,
  idle threads not spinning so that they take no core from the interleaved torch calls);
* ONNX Runtime INT8: static post-training quantisation of that file
  (``quant_pre_process``, then ``quantize_static``: QDQ format, per-channel int8 weights,
  uint8 activations, MinMax ranges from the calibration images), same session settings.

An ONNX Runtime row gets a time only when the fp32 export passed its parity check
(``ExportReport.ok``: within 1e-4 of the logits' range of eager PyTorch); otherwise it says
``FAILED parity``. The INT8 row also reports its top-1 agreement with fp32 and the max / mean
absolute logit difference on held-out images that calibrated nothing.

Weights. Agreement means little with random weights (top-1 is then decided by near-ties and
random features carry almost no signal above the INT8 noise), so the row uses either a
``tools/train_cls.py`` checkpoint (``--weights``) or, by default, a network trained in the run:
``serve_train_steps`` SGD steps on the package's synthetic images (10 classes, colour and stripe
orientation, 32x32) from the zero-init-residual start, then its BN statistics re-estimated at the
serving size on the calibration images (``update_bn``). A checkpoint's network is rebuilt by the
classification layer (``classifier_from_checkpoint``, ``trained_image_size``). Every row says
which (``weights``).

Images: the package's synthetic generator (``resnet_backbone.data.synthetic.make_synthetic``)
at the serving size, normalised as the classifier expects (mean subtracted, 0..255 scale, the
paper's input), from three disjoint seeds: training (default weights only), calibration (BN
re-estimation and INT8 ranges) and held-out (the timed batch, agreement and accuracy).

This module imports no detectron2 (the detector part, ``benchmarks.detection``, does).
"""
import copy
import os
import sys
import tempfile
import time
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.optim.swa_utils import update_bn

from ..checkpoint import load_checkpoint_file, load_state_dict_checked, state_dict_from_checkpoint
from ..data.synthetic import make_synthetic
from ..export import export_classifier, onnx_available, onnx_feeds
from ..fast import optimize_for_inference, speed_up_strided_1x1
from ..models import build_resnet
from .harness import Bench, infer_fn, timing_rows

ROW = "serve"
#: ONNX Runtime session settings of every ONNX row (threads: torch's count at run time).
ORT_SETTINGS = ("CPUExecutionProvider, graph optimisation ORT_ENABLE_ALL, intra_op_num_threads = "
                "torch threads, inter_op_num_threads 1, sequential execution, thread spinning "
                "off")
INT8_SETTINGS = ("quant_pre_process + quantize_static: QDQ, per-channel int8 weights, uint8 "
                 "activations, MinMax calibration")
#: The synthetic classification task of the default weights.
SYNTHETIC_CLASSES = 10
TRAIN_SIZE, TRAIN_BATCH, TRAIN_LR = 32, 32, 0.02
#: Seeds of the three disjoint image sets.
TRAIN_SEED, CALIBRATION_SEED, HELD_OUT_SEED = 10, 11, 12
#: The paper's input: the (channel) mean subtracted, 0..255 scale, std 1.
CHANNEL_MEAN = (123.675, 116.28, 103.53)
#: Columns of every serve row, in this order (None where a value does not apply).
EXTRA_COLUMNS = ("parity", "top1_agree", "max_logit_diff", "mean_logit_diff", "held_out_top1",
                 "weights")
#: Keys of a row that the table leaves out (printed once below it).
DETAIL_KEYS = ("details",)


# ------------------------------------------------------------------------------ the network

class Served:
    """The classifier of the row: the model (eval, CPU, fp32), how its inputs are normalised,
    what its weights are, and whether synthetic labels are its classes."""

    def __init__(self, model: nn.Module, name: str, depth: Optional[int], image_size: int,
                 mean: torch.Tensor, std: torch.Tensor, weights: str, details: str,
                 labels_meaningful: bool):
        self.model, self.name, self.depth, self.image_size = model.eval(), name, depth, image_size
        self.mean, self.std = mean.float(), std.float().view(1, 3, 1, 1)
        self.weights, self.details, self.labels_meaningful = weights, details, labels_meaningful
        self.num_classes = model.linear.out_features if hasattr(model, "linear") else None

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> the float input of the network."""
        mean = self.mean
        if mean.dim() == 3 and mean.shape[-2:] not in ((1, 1), tuple(images.shape[-2:])):
            mean = F.interpolate(mean[None], size=images.shape[-2:], mode="bilinear",
                                 align_corners=False)[0]
        return ((images.float() - mean.view(1, 3, *mean.shape[-2:])) / self.std).contiguous()


def synthetic_images(n: int, size: int, seed: int, num_classes: int = SYNTHETIC_CLASSES):
    """(uint8 images (n, 3, size, size), labels (n,)) of the package's synthetic generator."""
    data = make_synthetic(n, num_classes=num_classes, image_size=size, seed=seed)
    return data.images, data.labels


def train_on_synthetic(model: nn.Module, steps: int, normalize: Callable, *, seed: int = 0
                       ) -> float:
    """``steps`` SGD steps (Nesterov momentum 0.9, weight decay 1e-4, lr ``TRAIN_LR`` with a
    linear warm-up over the first fifth and a cosine decay) on fresh synthetic images, batch
    ``TRAIN_BATCH`` at ``TRAIN_SIZE``; the last step's loss."""
    images, labels = synthetic_images(steps * TRAIN_BATCH, TRAIN_SIZE, TRAIN_SEED + seed)
    net = speed_up_strided_1x1(copy.deepcopy(model).cpu(), "cpu")  # same names, faster on CPU
    opt = torch.optim.SGD(net.parameters(), lr=TRAIN_LR, momentum=0.9, nesterov=True,
                          weight_decay=1e-4)
    warm = max(1, steps // 5)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + np.cos(np.pi * i / steps)))
    net.train()
    loss = torch.tensor(float("nan"))
    for i in range(steps):
        batch = slice(i * TRAIN_BATCH, (i + 1) * TRAIN_BATCH)
        loss = F.cross_entropy(net(normalize(images[batch])), labels[batch])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.load_state_dict(net.state_dict())
    return loss.item()


def trained_on_synthetic(depth: int, image_size: int, steps: int, calibration: torch.Tensor
                         ) -> Served:
    """The default network of the row: ours R-``depth`` (paper architecture, 10 classes), trained
    ``steps`` steps on synthetic images, BN statistics then re-estimated at ``image_size`` on the
    calibration images (uint8)."""
    torch.manual_seed(0)
    model = build_resnet(depth, num_classes=SYNTHETIC_CLASSES, zero_init_residual=True)
    served = Served(model, f"R-{depth}", depth, image_size,
                    torch.tensor(CHANNEL_MEAN).view(3, 1, 1), torch.ones(3),
                    f"trained {steps} steps on synthetic data",
                    "", labels_meaningful=True)
    start = time.perf_counter()
    loss = train_on_synthetic(model, steps, served.normalize)
    # BN statistics: the plain average over the calibration batches (train-mode passes; the
    # model stays in eval mode, as ``Served`` put it)
    update_bn(served.normalize(calibration).split(8), model)
    note(f"R-{depth} trained {steps} steps on synthetic data, BN re-estimated "
         f"({time.perf_counter() - start:.1f} s)")
    served.details = (
        f"weights: ours R-{depth} (paper architecture, stride in the 1x1 conv), "
        f"{SYNTHETIC_CLASSES} classes, zero-init-residual start (seed 0), trained {steps} SGD "
        f"steps (batch {TRAIN_BATCH}, lr {TRAIN_LR}, warm-up + cosine) on synthetic "
        f"{TRAIN_SIZE}x{TRAIN_SIZE} images (final loss {loss:.3f}); BN statistics re-estimated "
        f"at {image_size}x{image_size} on {len(calibration)} calibration images; not ImageNet "
        "weights (give --weights for a tools/train_cls.py checkpoint)")
    return served


def from_checkpoint(path: str, depth: int, image_size: Optional[int]) -> Served:
    """The ``Served`` classifier of ``--weights``: a ``tools/train_cls.py`` checkpoint, rebuilt
    by ``classifier_from_checkpoint`` (its recorded config; served with its pixel mean at
    ``trained_image_size``), or a plain state dict of ours R-``depth`` (classes from its
    ``linear`` layer)."""
    obj = load_checkpoint_file(path)
    name = os.path.basename(path)
    if isinstance(obj, Mapping) and "cfg" in obj:
        # the classification layer only here: the benchmark itself needs no classification extras
        from ..classification.backbone_export import classifier_from_checkpoint
        from ..classification.config import trained_image_size
        model, cfg = classifier_from_checkpoint(path, obj)
        synthetic = cfg.DATASETS.NAME == "synthetic"
        trained_size = trained_image_size(cfg)
        mean = torch.as_tensor(obj.get("pixel_mean", cfg.INPUT.PIXEL_MEAN)).float()
        mean = mean if mean.dim() == 3 else mean.view(3, 1, 1)  # a mean image or per channel
        std = torch.tensor(cfg.INPUT.PIXEL_STD)
        model_name = cfg.MODEL.NAME
        labels = synthetic and cfg.DATASETS.SYNTHETIC.NUM_CLASSES == SYNTHETIC_CLASSES
        what = f"{cfg.MODEL.NAME} trained on {cfg.DATASETS.NAME}"
    else:
        state, _ = state_dict_from_checkpoint(obj, path)
        classes = state["linear.weight"].shape[0] if "linear.weight" in state else 1000
        model = build_resnet(depth, num_classes=int(classes))
        trained_size, mean, std = 224, torch.tensor(CHANNEL_MEAN).view(3, 1, 1), torch.ones(3)
        model_name, labels, what = f"resnet{depth}", False, f"a state dict of ours R-{depth}"
        load_state_dict_checked(model, state, source=path)
    size = image_size or trained_size
    model_depth = int(model_name[len("resnet"):]) if model_name[len("resnet"):].isdigit() and \
        model_name.startswith("resnet") else None
    details = (f"weights: checkpoint {path} ({what}), served at {size}x{size} with its pixel "
               f"mean / std; held-out accuracy is given only for a synthetic-data checkpoint")
    return Served(model, f"R-{model_depth}" if model_depth else model_name, model_depth, size,
                  mean, std, f"checkpoint {name}",
                  details, labels_meaningful=labels)


def torchvision_peer(served: Served, calibration: torch.Tensor) -> Optional[nn.Module]:
    """torchvision's resnetD with the same number of classes (its own random weights; BN
    statistics calibrated on the calibration images so its activations stay finite and normal),
    or None when the served network is not an ImageNet ResNet."""
    if served.depth is None or served.num_classes is None:
        return None
    torch.manual_seed(0)
    peer = getattr(torchvision.models, f"resnet{served.depth}")(num_classes=served.num_classes)
    update_bn(served.normalize(calibration).split(8), peer)  # train-mode passes, mode restored
    return peer.eval()


# ---------------------------------------------------------------------------- ONNX Runtime

def ort_session(path: str, threads: Optional[int] = None):
    """An ``onnxruntime.InferenceSession`` with ``ORT_SETTINGS``."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads must not spin: the timer interleaves ONNX Runtime with torch, and a
    # spinning pool took a core from the next torch call (R-50, batch 1, 2 cores: torch 1.7x
    # slower right after an ONNX Runtime call, ONNX Runtime itself no faster with spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_runner(session, *inputs: torch.Tensor) -> Callable[[], object]:
    """A call of ``session`` on ``inputs`` (converted to numpy once, outside the call)."""
    feeds = onnx_feeds(session, inputs)
    return lambda: session.run(None, feeds)


def quantize_int8(fp32_path: str, out_path: str, calibration: torch.Tensor, batch: int = 8) -> str:
    """Static INT8 quantisation of a classifier ONNX file (``INT8_SETTINGS``), calibrated on
    ``calibration`` (normalised inputs); returns ``out_path``."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    import onnx

    input_name = onnx.load(fp32_path, load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: x.numpy()} for x in calibration.split(batch)])

        def get_next(self):
            return next(self.batches, None)

    pre = out_path[:-len(".onnx")] + ".pre.onnx"
    quant_pre_process(fp32_path, pre)  # shape inference and ORT's graph clean-up (folds BN)
    quantize_static(pre, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return out_path


def run_batches(session, x: torch.Tensor, batch: int = 8) -> torch.Tensor:
    name = session.get_inputs()[0].name
    return torch.cat([torch.from_numpy(session.run(None, {name: chunk.numpy()})[0])
                      for chunk in x.split(batch)])


def agreement(reference: torch.Tensor, other: torch.Tensor) -> Dict[str, float]:
    """Top-1 agreement and max / mean absolute difference of two logit tensors."""
    diff = (other.float() - reference.float()).abs()
    return dict(top1_agree=(other.argmax(1) == reference.argmax(1)).float().mean().item(),
                max_logit_diff=diff.max().item(), mean_logit_diff=diff.mean().item())


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def median_margin(logits: torch.Tensor) -> float:
    """Median gap between the top two logits (how far predictions are from ties)."""
    top2 = logits.float().topk(2, dim=1).values
    return (top2[:, 0] - top2[:, 1]).median().item()


# ---------------------------------------------------------------------------------- rows

def serve_row(row: dict) -> dict:
    """A row with every serve column (None where it does not apply), in a fixed order."""
    out = {k: v for k, v in row.items() if k not in EXTRA_COLUMNS + DETAIL_KEYS}
    out.update({k: row.get(k) for k in EXTRA_COLUMNS + DETAIL_KEYS})
    return out


def untimed_row(model: str, image_size, batch: int, status: str, **fields) -> dict:
    """A row without a time: a failed parity check, or a runtime that could not run."""
    return serve_row(dict(row=ROW, model=model, mode="inference", image_size=image_size,
                          batch=batch, seconds=None, images_per_s=None, ratio_vs_peer=None,
                          cpu_seconds=None, cpu_ratio_vs_peer=None, parity=status, **fields))


def onnx_missing_reason() -> Optional[str]:
    """Why the ONNX rows cannot run here, or None."""
    if not onnx_available():
        return "skipped: onnx / onnxruntime not installed (pip install 'resnet_backbone[onnx]')"
    import importlib.util
    if importlib.util.find_spec("onnxscript") is None:
        return "skipped: onnxscript not installed (the dynamo ONNX exporter needs it)"
    return None


def failed_export(error: Exception) -> str:
    """The status of a row whose export raised: the exception's type and first line."""
    first_line = (str(error).splitlines() or [""])[0]  # an exception may have no message
    return f"FAILED export: {type(error).__name__}: {first_line[:200]}"


def note(message: str) -> None:
    print(f"[{ROW}] {message}", file=sys.stderr, flush=True)


def serve_classifier_rows(bench: Bench, grid, weights: Optional[str] = None) -> List[dict]:
    """The classifier part of the serve row (module docstring), for every depth of
    ``grid["serve_depths"]`` (one network when ``weights`` is a checkpoint)."""
    if bench.device.type != "cpu":
        raise ValueError("the serve row measures CPU serving; run it with --device cpu")
    results = []
    depths = grid["serve_depths"][:1] if weights else grid["serve_depths"]
    for depth in depths:
        results += _serve_classifier(bench, grid, depth, weights)
    return results


def _serve_classifier(bench: Bench, grid, depth: int, weights: Optional[str]) -> List[dict]:
    size = grid.get("serve_image_size")
    served = from_checkpoint(weights, depth, size) if weights else None
    size = served.image_size if served else (size or 224)
    n_cal, n_held = grid["serve_calibration_images"], grid["serve_held_out_images"]
    calibration, _ = synthetic_images(n_cal, size, CALIBRATION_SEED)
    held_images, held_labels = synthetic_images(max(n_held, max(grid["serve_batches"])), size,
                                                HELD_OUT_SEED)
    if served is None:
        served = trained_on_synthetic(depth, size, grid["serve_train_steps"], calibration)
    model = served.model
    x_cal, x_held = served.normalize(calibration), served.normalize(held_images)
    suffix, image_size = f" {served.name}", size
    with torch.no_grad():
        eager_logits = model(x_held)
    details = [served.details, f"held-out: {len(x_held)} synthetic images (seed "
               f"{HELD_OUT_SEED}), median top-1 margin of the fp32 logits "
               f"{median_margin(eager_logits):.3g}; calibration: {len(x_cal)} images (seed "
               f"{CALIBRATION_SEED})"]
    acc = accuracy(eager_logits, held_labels) if served.labels_meaningful else None

    # the torch models (``bench.prepare``: the run's layout and compile, ours' CPU fast path)
    models = {}
    peer = torchvision_peer(served, calibration)
    if peer is not None:
        models["torchvision eager"] = bench.prepare(peer)
    models["ours eager"] = bench.prepare(copy.deepcopy(model))
    models["ours fast"] = optimize_for_inference(model, dtype=bench.dtype, compile=bench.compile,
                                                 device="cpu")
    peer_name = "torchvision eager" if peer is not None else "ours eager"

    # the ONNX files, each checked before it is timed
    sessions, statuses, int8_stats = {}, {}, {}
    reason = onnx_missing_reason()
    tmp = tempfile.TemporaryDirectory(prefix="serve_")
    try:
        if reason:
            note(f"ONNX Runtime rows {reason}")
            statuses = {"ONNX Runtime fp32": reason, "ONNX Runtime INT8": reason}
        else:
            sessions, statuses, int8_stats = _onnx_sessions(served, tmp.name, x_cal, x_held,
                                                            held_labels)
        details.append(f"ONNX Runtime: {ORT_SETTINGS} ({torch.get_num_threads()}); INT8: "
                       f"{INT8_SETTINGS} over the {len(x_cal)} calibration images")
        # the columns beyond the times, per runtime
        extra = {"torchvision eager": dict(weights="random, BN calibrated"),
                 "ours eager": dict(held_out_top1=acc), "ours fast": dict(held_out_top1=acc),
                 "ONNX Runtime fp32": dict(parity=statuses["ONNX Runtime fp32"],
                                           held_out_top1=int8_stats.get("fp32_top1")),
                 "ONNX Runtime INT8": dict(parity=statuses["ONNX Runtime INT8"],
                                           held_out_top1=int8_stats.get("int8_top1"),
                                           **{k: int8_stats.get(k) for k in (
                                               "top1_agree", "max_logit_diff",
                                               "mean_logit_diff")})}
        results = []
        for b in grid["serve_batches"]:
            x = x_held[:b].contiguous()
            fns = {name: infer_fn(bench, m, x) for name, m in models.items()}
            fns.update({name: ort_runner(s, x) for name, s in sessions.items()})
            times = bench.time(fns)
            rows = [serve_row(r) for r in timing_rows(times, peer_name, suffix, b, row=ROW,
                                                      mode="inference", image_size=image_size)]
            for name in ("ONNX Runtime fp32", "ONNX Runtime INT8"):
                if name not in sessions:
                    rows.append(untimed_row(f"{name}{suffix}", image_size, b, statuses[name]))
            for r in rows:
                r.update(weights=served.weights, details="; ".join(details))
                r.update(extra[r["model"][:-len(suffix)]])
            results += rows
    finally:
        sessions.clear()
        tmp.cleanup()
    return results


def _onnx_sessions(served: Served, folder: str, x_cal, x_held, held_labels):
    """({runtime: session} of the checked ONNX files, {runtime: parity text}, INT8 stats)."""
    sessions, statuses, stats = {}, {}, {}
    fp32_path = os.path.join(folder, "classifier.onnx")
    start = time.perf_counter()
    try:
        report = export_classifier(copy.deepcopy(served.model), fp32_path, "onnx",
                                   sample=x_held[:2])
    except Exception as e:  # every exporter failed: the rows say why, the others still run
        status = failed_export(e)
        note(status)
        return sessions, {"ONNX Runtime fp32": status, "ONNX Runtime INT8": status}, stats
    parity = (f"{'ok' if report.ok else 'FAILED parity'}: max |onnx - eager| "
              f"{report.max_abs_diff:.2g} (tolerance {report.tolerance:.2g}, {report.method})")
    note(f"fp32 export {parity} ({time.perf_counter() - start:.1f} s)")
    statuses = {"ONNX Runtime fp32": parity, "ONNX Runtime INT8": parity}
    if not report.ok:
        return sessions, statuses, stats
    sessions["ONNX Runtime fp32"] = ort_session(fp32_path)
    start = time.perf_counter()
    int8_path = quantize_int8(fp32_path, os.path.join(folder, "classifier.int8.onnx"), x_cal)
    sessions["ONNX Runtime INT8"] = ort_session(int8_path)
    fp32 = run_batches(sessions["ONNX Runtime fp32"], x_held)
    int8 = run_batches(sessions["ONNX Runtime INT8"], x_held)
    stats = agreement(fp32, int8)
    if served.labels_meaningful:
        stats.update(fp32_top1=accuracy(fp32, held_labels), int8_top1=accuracy(int8, held_labels))
    statuses["ONNX Runtime INT8"] = (f"fp32 export {parity.split(':')[0]}; INT8 vs fp32 on "
                                     f"{len(x_held)} held-out images")
    note(f"INT8 top-1 agreement with fp32 {stats['top1_agree']:.3f}, max |logit diff| "
         f"{stats['max_logit_diff']:.3g}, mean {stats['mean_logit_diff']:.3g} (quantised and "
         f"checked in {time.perf_counter() - start:.1f} s)")
    return sessions, statuses, stats


# ------------------------------------------------------------------------------ the table

def print_table(results: List[dict], tablefmt: str = "simple") -> None:
    """The serve rows (``resnet_backbone.benchmarks.harness.print_table`` prints the other rows), then
    each distinct ``details`` text once."""
    from tabulate import tabulate
    rows = [r for r in results if r.get("row") == ROW]
    if not rows:
        return
    keys = [k for k in rows[0] if k != "row" and k not in DETAIL_KEYS]
    print(f"\n== {ROW} ==" if tablefmt == "simple" else f"\n#### {ROW}\n")
    print(tabulate([[r.get(k) for k in keys] for r in rows], headers=keys, floatfmt=".3f",
                   tablefmt=tablefmt, missingval="-"))
    seen = []
    for r in rows:
        if r.get("details") and r["details"] not in seen:
            seen.append(r["details"])
    for text in seen:
        print(f"\n{text}")
