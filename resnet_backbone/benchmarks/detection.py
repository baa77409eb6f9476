"""The detectron2 rows of the benchmark (``tools/benchmark.py --rows backbone,detector,memory``)
and the detector part of the ``serve`` row: the paper's C4 backbone and Faster R-CNN C4 against
detectron2's builtin ones, with the same weights, on the same input.

The weights are untrained (seeded), so every FrozenBN is first calibrated on the timed input
(``init_bn_statistics_from_data``), then the same state is copied into detectron2's model. With a
new FrozenBN's identity statistics the activations grow through the stages and the RPN's boxes
degenerate: the RoI head would run on one region or none (none, measured, for R-101-C4 on the
detector row's 600x1000 image) instead of ``POST_NMS_TOPK_TEST`` (300) of them.
"""
import copy
import os
import tempfile
import time
from typing import List, Sequence

import torch

from ..detection import get_detection_cfg  # needs detectron2: ImportError here without it
from ..detection.export import export_detector
from ..fast import optimize_for_inference, speed_up_strided_1x1
from ..models.layers import init_bn_statistics_from_data
from ..recipes import get_config_file
from . import serving
from .harness import Bench, fast_model, infer_fn, timing_rows

#: The whole detector compared: our COCO config (its builtin twin swaps backbone and head).
DETECTOR_CONFIG = "detection/faster_rcnn_R_101_C4_coco2017.yaml"


def detection_cfg(depth: int, builtin: bool, opts: Sequence = ()):
    """Our C4 Faster R-CNN config; ``builtin`` swaps in detectron2's backbone and res5 head
    with the same architecture (depth, stride in 1x1, FrozenBN, freeze at 2, res4 out).
    ``opts``: further config overrides (KEY VALUE ...)."""
    cfg = get_detection_cfg(get_config_file(DETECTOR_CONFIG), [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.PAPER_RESNET.DEPTH", str(depth),
        *opts])
    if builtin:
        pr, rn = cfg.MODEL.PAPER_RESNET, cfg.MODEL.RESNETS
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
        rn.DEPTH, rn.STRIDE_IN_1X1, rn.NORM = pr.DEPTH, pr.STRIDE_IN_1X1, pr.NORM
        rn.OUT_FEATURES, rn.RES5_DILATION = list(pr.OUT_FEATURES), pr.RES5_DILATION
        cfg.MODEL.BACKBONE.FREEZE_AT = pr.FREEZE_AT
    return cfg


def detection_pair(bench: Bench, depth: int, backbone_only: bool, sample, opts: Sequence = ()):
    """(ours, detectron2's), eval mode on the CPU, with identical weights: detectron2's
    (seeded) initial weights copied into ours, ours' FrozenBN statistics calibrated on
    ``sample`` (the timed input, on the CPU: an image batch for a backbone, a list of
    detectron2 input dicts for a detector), then ours' whole state copied back into the peer."""
    from detectron2.modeling import build_backbone, build_model
    from detectron2.layers import ShapeSpec
    built = []
    for builtin in (False, True):
        torch.manual_seed(0)
        cfg = detection_cfg(depth, builtin, opts)
        model = (build_backbone(cfg, ShapeSpec(channels=3)) if backbone_only
                 else build_model(cfg))
        built.append(model.eval())
    ours, peer = built
    ours.load_state_dict(peer.state_dict())  # same names: a mismatch fails here
    init_bn_statistics_from_data(ours, lambda: ours(sample))
    peer.load_state_dict(ours.state_dict())
    return ours, peer


def proposals_per_image(model, inputs) -> int:
    """How many regions the RoI head of ``model`` runs on for ``inputs`` (one forward)."""
    seen = []
    handle = model.roi_heads.register_forward_pre_hook(
        lambda module, args: seen.append(len(args[2][0])))  # (images, features, proposals)
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        handle.remove()
    return seen[0]


def backbone_row(bench: Bench, grid) -> List[dict]:
    depth, (h, w) = grid["backbone_depth"], grid["det_size"]
    x = bench.input(1, 3, h, w)
    ours, peer = detection_pair(bench, depth, backbone_only=True, sample=x.cpu())
    fast = fast_model(bench, ours.to(bench.device))
    ours, peer = bench.prepare(ours), bench.prepare(peer)
    times = bench.time({"ours build_paper_resnet": infer_fn(bench, ours, x),
                        "detectron2 build_resnet_backbone": infer_fn(bench, peer, x),
                        "ours fast": infer_fn(bench, fast, x)})
    return timing_rows(times, "detectron2 build_resnet_backbone", f" R-{depth} C4", 1,
                       row="backbone", mode="forward", image_size=f"{h}x{w}")


def detector_inputs(bench: Bench, h: int, w: int, device=None):
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, h, w, generator=g) * 255).to(device or bench.device)
    return [{"image": image, "height": h, "width": w}]


def detector_row(bench: Bench, grid) -> List[dict]:
    (h, w) = grid["det_size"]
    ours, peer = detection_pair(bench, 101, backbone_only=False,
                                sample=detector_inputs(bench, h, w, "cpu"))
    # ours as DetectionTrainer.build_model gives it (the device's training fast path)
    ours = speed_up_strided_1x1(ours.to(bench.device), str(bench.device))
    peer = peer.to(bench.device)
    fast = ours_fast_detector(bench, ours)
    inputs = detector_inputs(bench, h, w)
    times = bench.time({"ours (PaperRes5ROIHeads)": infer_fn(bench, ours, inputs),
                        "detectron2 builtin": infer_fn(bench, peer, inputs),
                        "ours fast": infer_fn(bench, fast, inputs)},
                       repeats=grid["det_repeats"], warmup=1)
    return timing_rows(times, "detectron2 builtin", " Faster R-CNN R-101-C4", 1,
                       row="detector", mode="inference", image_size=f"{h}x{w}")


def ours_fast_detector(bench: Bench, model):
    """A copy of the detector whose backbone and res5 head have the fast paths (the RPN,
    pooler and box predictor stay as they are)."""
    fast = copy.deepcopy(model)
    fast.backbone = optimize_for_inference(fast.backbone, device=str(bench.device))
    fast.roi_heads.res5 = optimize_for_inference(fast.roi_heads.res5, device=str(bench.device))
    return fast


def backbone_memory_rows(bench: Bench, grid) -> List[dict]:
    """Peak memory of the C4 backbone forward: ours, detectron2's, ours fast."""
    results = []
    depth, (h, w) = grid["backbone_depth"], grid["det_size"]
    x = bench.input(1, 3, h, w)
    ours, peer = detection_pair(bench, depth, backbone_only=True, sample=x.cpu())
    for name, model in (("ours build_paper_resnet", ours),
                        ("detectron2 build_resnet_backbone", peer),
                        ("ours fast", fast_model(bench, ours))):
        peak = bench.peak_memory(infer_fn(bench, bench.prepare(model), x))
        results.append(dict(row="memory", model=f"{name} R-{depth} C4", mode="forward",
                            batch=1, image_size=f"{h}x{w}", peak_mib=peak / 2 ** 20))
    return results


# ------------------------------------------------------------------------ the serve row

def serve_detector_rows(bench: Bench, grid) -> List[dict]:
    """The detector part of the ``serve`` row: one image (``grid["serve_det_size"]``) through
    Faster R-CNN R-``serve_det_depth``-C4 (our COCO config), untrained (seeded) weights with
    FrozenBN calibrated on that image, in detectron2 eager (its builtin backbone and
    Res5ROIHeads, the same weights), ours fast (``ours_fast_detector``) and ONNX Runtime
    (``export_detector(..., "onnx")``'s file, timed only if its parity check passed)."""
    if bench.device.type != "cpu":
        raise ValueError("the serve row measures CPU serving; run it with --device cpu")
    depth, (h, w) = grid["serve_det_depth"], grid["serve_det_size"]
    opts = []
    if grid.get("serve_det_proposals"):
        opts = ["MODEL.RPN.POST_NMS_TOPK_TEST", int(grid["serve_det_proposals"])]
    inputs = detector_inputs(bench, h, w, "cpu")
    ours, peer = detection_pair(bench, depth, backbone_only=False, sample=inputs, opts=opts)
    regions = proposals_per_image(ours, inputs)
    name = f" Faster R-CNN R-{depth}-C4"
    models = {"detectron2 eager": bench.prepare(peer)}
    status = serving.onnx_missing_reason()
    session = None
    tmp = tempfile.TemporaryDirectory(prefix="serve_det_")
    try:
        if status is None:
            path = os.path.join(tmp.name, "detector.onnx")
            start = time.perf_counter()
            try:
                report = export_detector(copy.deepcopy(ours), inputs[0]["image"], path, "onnx")
                status = ("ok" if report.ok else "FAILED parity") + (
                    f": {report.detections[1]} detections (eager {report.detections[0]}), "
                    f"{report.unmatched} unmatched, max box diff {report.max_box_diff:.2g} px, "
                    f"max score diff {report.max_score_diff:.2g}")
                if report.ok:
                    session = serving.ort_session(path)
            except Exception as e:  # the export failed: that row says why, the others run
                status = serving.failed_export(e)
            serving.note(f"detector ONNX export {status} ({time.perf_counter() - start:.1f} s)")
        else:
            serving.note(f"detector ONNX Runtime row {status}")
        # ours as DetectionTrainer.build_model gives it, then the inference fast paths
        models["ours fast"] = ours_fast_detector(bench, speed_up_strided_1x1(ours, "cpu"))
        fns = {k: infer_fn(bench, m, inputs) for k, m in models.items()}
        if session is not None:
            fns["ONNX Runtime fp32"] = serving.ort_runner(session, inputs[0]["image"])
        times = bench.time(fns, repeats=grid["det_repeats"], warmup=1)
    finally:
        session = None
        tmp.cleanup()
    rows = [serving.serve_row(r) for r in timing_rows(
        times, "detectron2 eager", name, 1, row=serving.ROW, mode="inference",
        image_size=f"{h}x{w}")]
    if "ONNX Runtime fp32" not in times:
        rows.append(serving.untimed_row(f"ONNX Runtime fp32{name}", f"{h}x{w}", 1, status))
    details = (f"detector: configs/{DETECTOR_CONFIG} at depth {depth}, untrained weights (seed "
               f"0, detectron2's initialisation copied into ours) with every FrozenBN calibrated "
               f"on the timed image; the RoI head runs on {regions} regions; one random "
               f"{h}x{w} image; ONNX Runtime: {serving.ORT_SETTINGS} "
               f"({torch.get_num_threads()})")
    for r in rows:
        r["weights"] = "untrained, FrozenBN calibrated"
        r["details"] = details
        if r["model"].startswith("ONNX Runtime"):
            r["parity"] = status
    return rows
