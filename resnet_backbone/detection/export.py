"""Export a detector (a config plus weights) as one graph, and check it against eager detectron2.

``DetectorGraph`` is the whole detector as a module of tensors: an image, ``(3, H, W)`` in the
model's input format and already at its test size, in; boxes ``(N, 4)`` (in that image's
pixels), scores ``(N,)`` and classes ``(N,)`` out. Pre-processing (mean/std, padding), the
backbone, the RPN, the RoI head and the post-processing (per-class NMS, score threshold,
clipping) all run inside it, as detectron2's ``TracingAdapter`` does on detectron2 main; this
one is ours because ``detectron2.export`` does not import on detectron2 v0.6 (it needs caffe2).

Formats: ``onnx`` (traced, opset 17, checked in ONNX Runtime), ``torchscript`` (traced). The
check: the same number of detections, each matched to one of the same class with its score
within ``SCORE_TOLERANCE`` and its box within ``BOX_TOLERANCE`` pixels.
"""
import logging
import os
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..data.image_io import load_image
from ..export import load_torchscript, require_onnx, run_onnx
from ..exported_detector import METADATA_KEY, DetectorContract, prepare
from ..third_party import JIT_SCRIPT_DEPRECATED, MESHGRID_INDEXING

logger = logging.getLogger(__name__)
BOX_TOLERANCE = 0.5
SCORE_TOLERANCE = 1e-3
#: The share of eager detections that may lack a match. Rounding differs between runtimes (and
#: CPUs), and where two candidates score within that rounding, NMS and top-k may keep either:
#: the RPN's near-tied proposals of an untrained detector measured 2 of 200 detections
#: replaced on an Intel Xeon (ONNX Runtime, R-101-C4, 2026-12-04), none on an AMD EPYC. A trace
#: that baked in the sample's size, or a wrong normalisation, misses most of them.
UNMATCHED_FRACTION = 0.05
DETECTOR_FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}


class DetectorGraph(nn.Module):
    """A detectron2 ``GeneralizedRCNN`` (eval mode) as tensors in, tensors out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        from detectron2.modeling.postprocessing import detector_postprocess
        instances = self.model.inference([{"image": image}], do_postprocess=False)[0]
        instances = detector_postprocess(instances, image.shape[1], image.shape[2])
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


@dataclass
class DetectorExportReport:
    """Eager and exported detections, matched one to one (the same class, the closest box among
    those within ``BOX_TOLERANCE`` px with a score within ``SCORE_TOLERANCE``): detections with
    tied scores may come out in another order, so positions alone are not compared. The export
    passes with the same number of detections and at most ``UNMATCHED_FRACTION`` of them
    unmatched."""

    path: str
    format: str
    detections: Tuple[int, int]  # eager, export (over the checked images)
    unmatched: int  # eager detections with no export detection of the same class, score and box
    max_box_diff: float
    max_score_diff: float

    @property
    def allowed_unmatched(self) -> int:
        return int(UNMATCHED_FRACTION * self.detections[0])

    @property
    def compared(self) -> bool:
        """Whether the check compared anything: no detection on either side proves nothing."""
        return self.detections[0] > 0

    @property
    def ok(self) -> bool:
        return (self.compared and self.detections[0] == self.detections[1]
                and self.unmatched <= self.allowed_unmatched
                and self.max_box_diff <= BOX_TOLERANCE and self.max_score_diff <= SCORE_TOLERANCE)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        if not self.compared:
            verdict += (" (nothing compared: no detection on the sample images; give --image "
                        "with objects of the trained classes, or a lower score threshold, e.g. "
                        "MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.0, for the check)")
        return (f"{self.path}: {self.format}, {self.detections[1]} detections (eager "
                f"{self.detections[0]}), {self.unmatched} without a match of the same class, score "
                f"and box (at most {self.allowed_unmatched}: near-tied candidates), max box "
                f"difference {self.max_box_diff:.3g} px (tolerance {BOX_TOLERANCE}), max score "
                f"difference {self.max_score_diff:.3g} (tolerance {SCORE_TOLERANCE}): {verdict}")


def match_detections(expected, got) -> Tuple[int, float, float]:
    """(unmatched, max box difference, max score difference) of a greedy one-to-one matching of
    ``got`` to ``expected``, both ``(boxes, scores, classes)``: pairs of the same class within
    ``SCORE_TOLERANCE`` and ``BOX_TOLERANCE`` only (a detection replaced by another is unmatched,
    not paired with a far box)."""
    (boxes, scores, classes), (boxes2, scores2, classes2) = expected, got
    boxes, boxes2 = boxes.float(), boxes2.float()
    box_diff = (boxes[:, None, :] - boxes2[None, :, :]).abs().amax(-1)  # (eager, export)
    score_diff = (scores.float()[:, None] - scores2.float()[None, :]).abs()
    allowed = ((classes.long()[:, None] == classes2.long()[None, :]) & (score_diff <= SCORE_TOLERANCE)
               & (box_diff <= BOX_TOLERANCE))
    cost = torch.where(allowed, box_diff, torch.full_like(box_diff, float("inf")))
    unmatched, worst_box, worst_score = 0, 0.0, 0.0
    for i in range(len(scores)):
        j = int(cost[i].argmin()) if cost.shape[1] else -1
        if j < 0 or not torch.isfinite(cost[i, j]):
            unmatched += 1
            continue
        worst_box = max(worst_box, cost[i, j].item())
        worst_score = max(worst_score, score_diff[i, j].item())
        cost[:, j] = float("inf")
    return unmatched, worst_box, worst_score


def _compare(path: str, fmt: str, compared) -> DetectorExportReport:
    """The report over every ``(eager, export)`` pair of detections."""
    totals, unmatched, box_diff, score_diff = [0, 0], 0, 0.0, 0.0
    for expected, got in compared:
        u, b, s = match_detections(expected, got)
        totals = [totals[0] + len(expected[1]), totals[1] + len(got[1])]
        unmatched, box_diff, score_diff = unmatched + u, max(box_diff, b), max(score_diff, s)
    return DetectorExportReport(path, fmt, tuple(totals), unmatched, box_diff, score_diff)


def _ignore_checked_export_warnings() -> None:
    """The warnings of tracing and ONNX-exporting a detectron2 model, each checked:

    * ``TracerWarning``: detectron2 and torchvision branch in Python on tensor values and shapes
      (asserts, NMS variants by box count); the check on an image of another size shows whether
      the trace generalises, which is what these warnings doubt.
    * the TorchScript-based ONNX exporter's deprecation notes: the dynamo exporter cannot take
      a detectron2 model (data-dependent control flow), so this path is the working one; and
      its notes that a traced module has no signature, and that advanced indexing with negative
      indices would be wrong (the indices here come from ``nonzero`` and top-k: never negative).
    * ``torch.jit.trace``'s deprecation (torch >= 2.10), and ``torch.jit.script``'s, which
      torchvision's ``batched_nms`` calls while it is traced;
    * detectron2's anchor generator's ``torch.meshgrid`` call without ``indexing=``.
    """
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=JIT_SCRIPT_DEPRECATED, category=FutureWarning)
    warnings.filterwarnings("ignore", message=MESHGRID_INDEXING, category=UserWarning)
    for message in (r"You are using the legacy TorchScript-based ONNX export",
                    r"The feature will be removed", r"no signature found for",
                    r"Exporting aten::index operator of advanced indexing",
                    r"`torch\.jit\.trace(_method)?` is deprecated"):
        warnings.filterwarnings("ignore", message=message)


def _add_onnx_metadata(path: str, meta: dict) -> None:
    """Add ``meta`` (key -> string) to the ONNX file's ``metadata_props``, rewritten atomically."""
    if not meta:
        return
    import onnx
    graph = onnx.load(path)
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = f"{path}.tmp-{os.getpid()}"
    onnx.save(graph, tmp)
    os.replace(tmp, path)


def export_detector(model: nn.Module, image: torch.Tensor, path: str, fmt: str,
                    contract: Optional[DetectorContract] = None) -> DetectorExportReport:
    """Write the detector (traced on ``image``, ``(3, H, W)`` at its test size) to ``path`` and
    check the export against eager on ``image`` and on the same image transposed, ``(3, W, H)``:
    a trace that baked in the sample's size fails the second check. ``contract`` (input format,
    test sizes, class names) goes into the file's metadata under ``METADATA_KEY``, which
    ``resnet_backbone.exported_detector.load_exported_detector`` reads."""
    if fmt not in DETECTOR_FORMATS:
        raise ValueError(f"Unknown detector export format {fmt!r}; valid choices: "
                         f"{', '.join(DETECTOR_FORMATS)}")
    graph = DetectorGraph(model).cpu()
    checks = [image.cpu(), image.cpu().transpose(1, 2).contiguous()]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        _ignore_checked_export_warnings()
        traced = torch.jit.trace(graph, (checks[0],), check_trace=False)
        meta = {METADATA_KEY: contract.to_json()} if contract else {}
        if fmt == "torchscript":
            traced.save(path, _extra_files=meta)
            run = load_torchscript(path)
        else:
            require_onnx()
            torch.onnx.export(traced, (checks[0],), path, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["boxes", "scores", "classes"],
                              dynamic_axes={"image": {1: "height", 2: "width"},
                                            "boxes": {0: "detections"}, "scores": {0: "detections"},
                                            "classes": {0: "detections"}})
            _add_onnx_metadata(path, meta)
            run = lambda x: run_onnx(path, x)  # noqa: E731
        compared = [(graph(x), run(x)) for x in checks]
    return _compare(path, fmt, compared)


def build_detector(config_file: str, weights: Optional[str], opts: Sequence[str] = ()
                   ) -> Tuple[nn.Module, DetectorContract]:
    """``(model, contract)``: the detector of a detection config (YAML with ``KEY VALUE``
    overrides, or LazyConfig ``.py`` with ``key=value``) on the CPU, eval mode, with
    ``weights`` (a ``tools/train_det.py`` checkpoint; loaded safely) or, without them, its
    initial weights; the contract says what its input is (format, test sizes) and what its class
    indices mean (the checkpoint's ``DatasetClasses``, else the test datasets' registered
    metadata, else none). The config's own ``MODEL.WEIGHTS`` / ``train.init_checkpoint``
    (ImageNet backbone weights) is not loaded: an export is of a trained detector."""
    from .checkpoint import PaperDetectionCheckpointer, checkpoint_classes
    from .lazy import is_lazy_config
    from .pretrained import check_backbone_shapes, check_evaluated_predictor
    if is_lazy_config(config_file):
        model, (fmt, short, longest), test_sets = _lazy_detector(config_file, opts)
    else:
        from detectron2.modeling import build_model

        from .config import get_detection_cfg
        cfg = get_detection_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
        model = build_model(cfg)
        fmt, short, longest = cfg.INPUT.FORMAT, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
        test_sets = list(cfg.DATASETS.TEST)
    model.eval()
    classes = None
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"--weights {weights}: no such file")
        checkpointer = PaperDetectionCheckpointer(model)
        classes = checkpoint_classes(checkpointer.load(weights))
        # a file of another detector (classes, backbone) would predict with random weights
        check_backbone_shapes(checkpointer.last_load, "--weights")
        check_evaluated_predictor(checkpointer.last_load, "--weights")
    else:
        logger.warning("no weights given: the detector keeps its initial weights")
    if classes is None:
        classes = _registered_classes(test_sets)
    return model, DetectorContract(fmt, int(short), int(longest),
                                   classes.names if classes else [],
                                   classes.category_ids if classes else [])


def _registered_classes(names: Sequence[str]):
    """The classes of datasets registered under ``names`` (detectron2's builtin COCO / VOC
    names are), or None: a checkpoint of an older version carries none of its own."""
    from detectron2.data import DatasetCatalog

    from .checkpoint import DatasetClasses
    registered = [n for n in names if n in DatasetCatalog.list()]
    return DatasetClasses.of_datasets(registered) if registered else None


def _lazy_detector(config_file: str, opts: Sequence[str]) -> Tuple[nn.Module, Tuple, List[str]]:
    """(model, (input format, min size, max size), test dataset names) of a LazyConfig."""
    from detectron2.config import instantiate

    from .lazy import check_model, load_config
    cfg = load_config(config_file, list(opts))
    model = instantiate(cfg.model)
    check_model(model)
    resize = next((a for a in cfg.dataloader.test.mapper.augmentations if "short_edge_length" in a), None)
    if resize is None:
        raise ValueError(f"{config_file}: dataloader.test.mapper.augmentations has no "
                         "ResizeShortestEdge, so the test size is unknown")
    short = resize.short_edge_length
    short = short[0] if isinstance(short, Sequence) else short
    from .lazy import loader_datasets
    test_sets = loader_datasets(cfg.dataloader.test) if "test" in cfg.dataloader else []
    return model.cpu(), (cfg.model.input_format, int(short), int(resize.max_size)), test_sets


def sample_image(contract: DetectorContract, path: Optional[str] = None) -> torch.Tensor:
    """The sample input of a detector export: the image at ``path`` (or a random one) as the
    graph takes it (``resnet_backbone.exported_detector.prepare``: resized to the test size, in
    the contract's format), ``(3, H, W)``."""
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"--image {path}: no such file")
        return prepare(load_image(path), contract)
    short, longest = contract.min_size, contract.max_size
    width = min(round(short * 4 / 3), longest)
    return torch.rand(3, short, width, generator=torch.Generator().manual_seed(0)) * 255
