"""A trained classifier of ``tools/train_cls.py`` -> a backbone checkpoint for ``tools/train_det.py``
(``resnet_backbone.classification.backbone_export``: the ResNet weights without the classifier, and the
architecture and pixel statistics the detector must use).

    resnet-export-backbone output/imagenet/resnet50/model_final.pth R-50-ours.pth

(``python tools/export_backbone.py`` is the same.) Bad input ends with ``error: ...`` and exit
status 2.
"""
import argparse
import sys

from ..classification.backbone_export import export_backbone
from .common import run_tool


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", help="model_final.pth / model_best.pth / model_<iter>.pth")
    p.add_argument("out", help="backbone checkpoint to write (.pth)")
    args = p.parse_args(argv)

    def body() -> None:
        meta = export_backbone(args.weights, args.out)
        print(f"wrote {args.out}: {meta['model_name']} backbone (shortcut {meta['shortcut']}, "
              f"stride_in_1x1 {meta['stride_in_1x1']}, norm {meta['norm']}), MODEL.PIXEL_MEAN "
              f"{[round(m, 3) for m in meta['pixel_mean']]} (RGB), MODEL.PIXEL_STD {meta['pixel_std']}")
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
