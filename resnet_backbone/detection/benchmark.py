"""The detectron2 rows of the benchmark (``tools/benchmark.py --rows backbone,detector,memory``):
the paper's C4 backbone and Faster R-CNN R-101-C4 against detectron2's builtin ones, with the
same weights, on the same input."""
import copy
from typing import List

import torch

from ..benchmark import Bench, fast_model, infer_fn, timing_rows
from ..fast import optimize_for_inference, speed_up_strided_1x1
from ..recipes import get_config_file

#: The whole detector compared: our COCO config (its builtin twin swaps backbone and head).
DETECTOR_CONFIG = "detection/faster_rcnn_R_101_C4_coco2017.yaml"


def detection_cfg(depth: int, builtin: bool):
    """Our C4 Faster R-CNN config; ``builtin`` swaps in detectron2's backbone and res5 head
    with the same architecture (depth, stride in 1x1, FrozenBN, freeze at 2, res4 out)."""
    from . import get_detection_cfg
    cfg = get_detection_cfg(get_config_file(DETECTOR_CONFIG), [
        "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.PAPER_RESNET.DEPTH", str(depth)])
    if builtin:
        pr, rn = cfg.MODEL.PAPER_RESNET, cfg.MODEL.RESNETS
        cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
        cfg.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
        rn.DEPTH, rn.STRIDE_IN_1X1, rn.NORM = pr.DEPTH, pr.STRIDE_IN_1X1, pr.NORM
        rn.OUT_FEATURES, rn.RES5_DILATION = list(pr.OUT_FEATURES), pr.RES5_DILATION
        cfg.MODEL.BACKBONE.FREEZE_AT = pr.FREEZE_AT
    return cfg


def detection_pair(bench: Bench, depth: int, backbone_only: bool):
    """(ours, detectron2's) with identical weights (detectron2's copied into ours)."""
    from detectron2.modeling import build_backbone, build_model
    from detectron2.layers import ShapeSpec
    built = []
    for builtin in (False, True):
        torch.manual_seed(0)
        cfg = detection_cfg(depth, builtin)
        model = (build_backbone(cfg, ShapeSpec(channels=3)) if backbone_only
                 else build_model(cfg))
        built.append(model.eval())
    ours, peer = built
    ours.load_state_dict(peer.state_dict())  # same names: a mismatch fails here
    return ours, peer


def backbone_row(bench: Bench, grid) -> List[dict]:
    depth, (h, w) = grid["backbone_depth"], grid["det_size"]
    ours, peer = detection_pair(bench, depth, backbone_only=True)
    fast = fast_model(bench, ours.to(bench.device))
    ours, peer = bench.prepare(ours), bench.prepare(peer)
    x = bench.input(1, 3, h, w)
    times = bench.time({"ours build_paper_resnet": infer_fn(bench, ours, x),
                        "detectron2 build_resnet_backbone": infer_fn(bench, peer, x),
                        "ours fast": infer_fn(bench, fast, x)})
    return timing_rows(times, "detectron2 build_resnet_backbone", f" R-{depth} C4", 1,
                       row="backbone", mode="forward", image_size=f"{h}x{w}")


def detector_inputs(bench: Bench, h: int, w: int):
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, h, w, generator=g) * 255).to(bench.device)
    return [{"image": image, "height": h, "width": w}]


def detector_row(bench: Bench, grid) -> List[dict]:
    (h, w) = grid["det_size"]
    ours, peer = detection_pair(bench, 101, backbone_only=False)
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
    ours, peer = detection_pair(bench, depth, backbone_only=True)
    x = bench.input(1, 3, h, w)
    for name, model in (("ours build_paper_resnet", ours),
                        ("detectron2 build_resnet_backbone", peer),
                        ("ours fast", fast_model(bench, ours))):
        peak = bench.peak_memory(infer_fn(bench, bench.prepare(model), x))
        results.append(dict(row="memory", model=f"{name} R-{depth} C4", mode="forward",
                            batch=1, image_size=f"{h}x{w}", peak_mib=peak / 2 ** 20))
    return results
