#!/usr/bin/env python
"""A trained classifier of tools/train_cls.py -> a backbone checkpoint for tools/train_det.py.

Our parameter names already are detectron2's ResNet names (stem.conv1.*, res2.0.conv1.*, ...),
so the export drops the classifier (``linear.*``) and writes ``{"model": state_dict,
"matching_heuristics": True, "meta": {...}}``: detectron2's checkpointer then matches
``res5.*`` to ``backbone.res5.*`` / ``roi_heads.res5.*`` by suffix. ``meta`` records what the
detector must use: the depth, shortcut, stride placement, and the RGB pixel mean (0..255, std 1).

    python tools/export_backbone.py output/imagenet/resnet50/model_final.pth R-50-ours.pth
"""
import argparse
import sys


from resnet_backbone.checkpoint import CheckpointError, load_checkpoint_file, save_checkpoint_atomic
from resnet_backbone.classification.config import cfg_from_checkpoint


def export_backbone(weights: str, out: str) -> dict:
    state = load_checkpoint_file(weights)
    cfg = cfg_from_checkpoint(state)
    name = cfg.MODEL.NAME
    if not name.startswith(("resnet", "plain", "cifar_resnet", "cifar_plain")):
        raise ValueError(f"{name} is not a ResNet/plain net; only those export as backbones")
    sd = {k: v for k, v in state["model"].items() if not k.startswith("linear.")}
    mean = state["pixel_mean"].float().mean((1, 2)).tolist()
    meta = {"model_name": name, "depth": int(name.rsplit("resnet", 1)[-1].rsplit("plain", 1)[-1]),
            "cifar": name.startswith("cifar_"), "residual": "resnet" in name,
            "shortcut": cfg.MODEL.SHORTCUT or ("A" if name.startswith("cifar_") else "B"),
            "stride_in_1x1": bool(cfg.MODEL.STRIDE_IN_1X1), "norm": cfg.MODEL.NORM,
            "input_format": "RGB", "pixel_mean": mean, "pixel_std": list(cfg.INPUT.PIXEL_STD)}
    save_checkpoint_atomic({"model": sd, "matching_heuristics": True, "__author__": "resnet_backbone",
                            "meta": meta}, out)
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="model_final.pth / model_best.pth / model_<iter>.pth")
    p.add_argument("out", help="backbone checkpoint to write (.pth)")
    args = p.parse_args(argv)
    try:
        meta = export_backbone(args.weights, args.out)
    except (ValueError, KeyError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {meta['model_name']} backbone, MODEL.PIXEL_MEAN {[round(m, 3) for m in meta['pixel_mean']]}"
          f" (RGB), MODEL.PIXEL_STD {meta['pixel_std']}, stride_in_1x1 {meta['stride_in_1x1']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
