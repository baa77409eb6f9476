"""Fig. 7: std of every 3x3 layer's response (after BN, before the nonlinearity) of trained
classifiers, in network order (top) and sorted (bottom), on test images of their dataset.

    python tools/plot_responses.py output/cifar10/plain20/model_final.pth \
        output/cifar10/resnet20/model_final.pth output/cifar10/resnet56/model_final.pth \
        --out fig7.png --num-images 1000

(``resnet-plot-responses`` is the same.) Bad input ends with ``error: ...`` and exit status 2.
"""
import argparse
import json
import sys
from pathlib import Path


import torch

from ..checkpoint import load_checkpoint_file, load_state_dict_checked
from ..classification.config import cfg_from_checkpoint
from ..classification.data import build_datasets
from ..classification.engine import build_model
from ..classification.plots import plot_responses
from ..classification.responses import layer_response_stds
from ..classification.transforms import Normalizer, TestViews
from .common import run_tool


def responses_of(weights: str, num_images: int, dataset_root: str):
    """(layer stds, which images they were measured on): the first ``num_images`` images of the
    checkpoint's test set (not a held-out part of the training set), center view, eval mode."""
    state = load_checkpoint_file(weights)
    cfg = cfg_from_checkpoint(state)
    if dataset_root:
        cfg.DATASETS.ROOT = dataset_root
    model = build_model(cfg)
    load_state_dict_checked(model, state["model"], source=weights)
    _, val_set, test_set = build_datasets(cfg)
    # build_datasets gives (train, held-out val, test) with DATASETS.VAL_HOLDOUT, else (train, test, None)
    test_set = test_set if test_set is not None else val_set
    split = "val" if cfg.DATASETS.NAME == "imagenet" else "test"
    views = TestViews(Normalizer(state["pixel_mean"], cfg.INPUT.PIXEL_STD), cfg.TEST.RESIZE,
                      cfg.TEST.CROP_SIZE)
    n = min(num_images, len(test_set))
    images = torch.cat([views.center(test_set[i][0]) for i in range(n)])
    return layer_response_stds(model, images), f"{n} {cfg.DATASETS.NAME} {split} images"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="model_final.pth / model_best.pth of tools/train_cls.py")
    p.add_argument("--labels", nargs="*", help="legend names (default: MODEL.NAME of each)")
    p.add_argument("--num-images", type=int, default=1000, help="test images to measure on")
    p.add_argument("--dataset-root", default="", help="override DATASETS.ROOT of the checkpoints")
    p.add_argument("--out", default="fig7_responses.png")
    p.add_argument("--title", default="Standard deviations of layer responses")
    args = p.parse_args(argv)

    def body() -> None:
        if args.labels and len(args.labels) != len(args.weights):
            raise ValueError(f"{len(args.labels)} labels for {len(args.weights)} checkpoints")
        results, measured_on = {}, set()
        for i, w in enumerate(args.weights):
            stds, images = responses_of(w, args.num_images, args.dataset_root)
            label = args.labels[i] if args.labels else cfg_from_checkpoint(load_checkpoint_file(w)).MODEL.NAME
            results[label] = [s for _, s in stds]
            measured_on.add(images)
        on = "; ".join(sorted(measured_on))
        out = plot_responses(results, args.out, title=f"{args.title}\n(on {on}, eval mode, after BN)")
        Path(out).with_suffix(".json").write_text(json.dumps({"measured_on": on, "stds": results}, indent=1))
        print(f"{out}: measured on {on}")
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
