"""Classify your own images with a trained classifier: the top-k classes of each image.

    resnet-predict-cls photos/ more/*.jpg --weights output/imagenet/resnet50/model_final.pth \\
        --output results.json
    resnet-predict-cls cat.jpg --weights R50_torchvision.pth --mode ten_crop --topk 3

Inputs: image files, folders (their image files, subfolders included) and glob patterns.
``--weights``: a ``tools/train_cls.py`` checkpoint, or weights written by
``resnet-convert-weights`` (torchvision / MSRA caffe2 ImageNet classifiers; the torchvision and
MSRA files themselves too). The preprocessing (channel order, pixel mean and std, test sizes)
and the class names come from the file. ``--mode``: the paper's test views (Sec. 3.4):
``center`` (resize + center crop), ``ten_crop`` (corners and center, and flipped),
``multi_scale`` (the whole image at each of the run's TEST.SCALES, and flipped); softmax
averaged over an image's views.

Printed: a table of each image's top-1 class and probability. ``--output``: a JSON file
(written atomically) with every image's top-k, ``{"class_index", "class_name", "score"}``, and
the files skipped. A file that cannot be read is reported (name and reason) and skipped; the
command then ends with a summary and exit status 1. Bad input (no images, a missing or wrong
weights file, a bad option) is one ``error: ...`` line and exit status 2.
(``python tools/predict_cls.py`` is the same.)
"""
import argparse
import json
import os
import sys
from typing import Dict, List

from ..checkpoint import write_text_atomic
from ..classification.config import EVAL_MODES
from ..data.image_io import find_images
from .common import run_tool
from .prediction import predict_files

#: Rows of the printed table when the results also go to a file.
TABLE_ROWS = 20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a train_cls checkpoint, a resnet-convert-weights file, or a name of "
                        "the weights registry (resnet50.torchvision; resnet_backbone.list_weights())")
    p.add_argument("--mode", default="center", metavar="MODE",
                   help=f"test views: {' | '.join(EVAL_MODES)} (default center)")
    p.add_argument("--topk", type=int, default=5, help="classes per image (default 5)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images read and run together (default 16)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--output", metavar="FILE.json", default="",
                   help="write every image's top-k here (JSON)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def results_json(args: argparse.Namespace, predictor, rows: List[Dict], run) -> str:
    return json.dumps({
        "weights": args.weights, "model": predictor.file.model_name, "mode": predictor.mode,
        "results": rows,
        "skipped": [{"file": path, "reason": reason} for path, reason in run.skipped]}, indent=1)


def table(rows: List[Dict], limit: int) -> str:
    from tabulate import tabulate
    shown = rows if limit <= 0 else rows[:limit]
    lines = tabulate([(r["file"], r["topk"][0]["class_name"], f"{r['topk'][0]['score']:.4f}")
                      for r in shown], headers=["file", "top-1", "probability"],
                     disable_numparse=True)
    if len(shown) < len(rows):
        lines += f"\n... and {len(rows) - len(shown)} more (all in the --output file)"
    return lines


def predict(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}")
    if args.output and not args.output.endswith(".json"):
        raise ValueError(f"--output {args.output}: name a .json file")
    paths = find_images(args.inputs)
    from ..classification.predictor import Predictor
    predictor = Predictor(args.weights, args.device, args.mode, args.topk)
    print(predictor.describe())
    rows: List[Dict] = []

    def on_result(path, rgb, top) -> None:
        rows.append({"file": path, "topk": [{"class_index": p.class_index, "class_name": p.class_name,
                                             "score": round(p.probability, 6)} for p in top]})

    run = predict_files(paths, predictor.predict_arrays, on_result, batch_size=args.batch_size,
                        progress=not args.no_progress)
    if rows:
        print(table(rows, TABLE_ROWS if args.output else 0))
    if args.output:
        if os.path.dirname(args.output):
            os.makedirs(os.path.dirname(args.output), exist_ok=True)
        write_text_atomic(args.output, results_json(args, predictor, rows, run))
        print(f"wrote {args.output} (top-{predictor.topk} of {len(rows)} image(s))")
    print(run.summary(), file=sys.stderr if run.skipped else sys.stdout)
    return run.exit_status


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: predict(args))


if __name__ == "__main__":
    sys.exit(main())
