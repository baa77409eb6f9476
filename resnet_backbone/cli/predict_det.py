"""Detect objects in your own images with a trained detector: COCO-format results JSON and,
on request, the images with their boxes drawn.

    resnet-predict-det photos/ more/*.jpg --weights output/demo_shapes/model_final.pth \\
        --output-dir predictions --draw
    resnet-predict-det photos/ --weights exported/Demo-Shapes-R18-C4.onnx --output-dir predictions

Inputs: image files, folders (their image files, subfolders included) and glob patterns.
``--weights``: a ``tools/train_det.py`` checkpoint (PyTorch; its ``--config-file`` defaults to
the ``config.yaml`` the run wrote beside it), or a detector exported by ``resnet-export-model``
(``.onnx``: ONNX Runtime, ``.ts``: TorchScript; the file carries its input format, test size and
class names). ``--runtime`` overrides the choice by extension.

Written to ``--output-dir``: ``coco_results.json`` (COCO's results format: ``image_id``,
``category_id``, ``bbox`` [x, y, w, h] in the original image's pixels, ``score``),
``coco_images.json`` (the ``images`` (id, file_name, height, width) and ``categories`` those
ids refer to: with pycocotools, ``COCO("coco_images.json").loadRes("coco_results.json")``), and
with ``--draw`` one PNG per image under ``vis/`` (detections of at least ``--draw-thresh``).
Files are written atomically. A file that cannot be read is reported (name and reason) and
skipped; the command then ends with a summary and exit status 1. Bad input (no images, a
missing or wrong weights file, a bad option) is one ``error: ...`` line and exit status 2.
(``python tools/predict_det.py`` is the same.)
"""
import argparse
import json
import os
import sys
from typing import Dict, List

from ..checkpoint import write_text_atomic
from ..data.image_io import find_images
from ..exported_detector import Detections, DetectorRunner, load_exported_detector, runtime_of
from .common import run_tool
from .prediction import predict_files

RUNTIMES = ("pytorch", "onnxruntime", "torchscript")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--weights", required=True, metavar="FILE",
                   help="a train_det checkpoint, or an exported .onnx / .ts detector")
    p.add_argument("--config-file", metavar="FILE", default="",
                   help="the detection config (PyTorch runtime; default: config.yaml beside --weights)")
    p.add_argument("--runtime", choices=RUNTIMES, default=None,
                   help="default: by the --weights extension (.onnx, .ts; else pytorch)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--output-dir", default="predictions", help="where to write (default: predictions)")
    p.add_argument("--score-thresh", type=float, default=0.0,
                   help="keep detections scoring at least this (default 0: all the model returns)")
    p.add_argument("--draw", action="store_true", help="also write the images with their boxes")
    p.add_argument("--draw-thresh", type=float, default=0.5, help="score of a drawn box (default 0.5)")
    p.add_argument("--no-progress", action="store_true",
                   help="one line per image (its detections) instead of the progress bar")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], metavar="KEY VALUE",
                   help="PyTorch runtime: config overrides, last on the line (as detectron2's "
                        "demo), e.g. --opts MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3")
    return p.parse_args(argv)


def build_runner(args: argparse.Namespace) -> DetectorRunner:
    runtime = runtime_of(args.weights, args.runtime)
    if runtime != "pytorch":
        if args.opts:
            raise ValueError(f"config overrides ({' '.join(args.opts)}) apply to the PyTorch "
                             "runtime only: an exported detector is fixed; export it again")
        return load_exported_detector(args.weights, runtime, args.device)
    if not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights {args.weights}: no such file")
    config = args.config_file or os.path.join(os.path.dirname(args.weights) or ".", "config.yaml")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"--config-file {config}: no such file (give the config the "
                                "weights were trained with: the config.yaml in the run's output folder)")
    from ..detection.predictor import Predictor
    return Predictor(config, args.weights, args.device, args.opts)


class CocoResults:
    """COCO-format results, gathered image by image."""

    def __init__(self, runner: DetectorRunner):
        self.contract, self.images, self.results = runner.contract, [], []

    def add(self, path: str, detections: Detections) -> int:
        image_id = len(self.images) + 1
        height, width = detections.image_size
        self.images.append({"id": image_id, "file_name": path, "height": int(height),
                            "width": int(width)})
        ids = self.contract.category_ids
        for (x0, y0, x1, y1), score, cls in zip(detections.boxes.tolist(),
                                                 detections.scores.tolist(), detections.classes.tolist()):
            self.results.append({"image_id": image_id,
                                 "category_id": ids[cls] if cls < len(ids) else cls + 1,
                                 "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                                 "score": round(score, 6)})
        return image_id

    def categories(self) -> List[Dict]:
        if self.contract.class_names:
            return [{"id": i, "name": n}
                    for i, n in zip(self.contract.category_ids, self.contract.class_names)]
        count = max((r["category_id"] for r in self.results), default=0)
        return [{"id": i, "name": f"class {i - 1}"} for i in range(1, count + 1)]

    def write(self, out_dir: str) -> None:
        write_text_atomic(os.path.join(out_dir, "coco_results.json"), json.dumps(self.results))
        write_text_atomic(os.path.join(out_dir, "coco_images.json"), json.dumps(
            {"images": self.images, "categories": self.categories(), "annotations": []}))


def _vis_path(out_dir: str, path: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    return os.path.join(out_dir, "vis", name + ".png")


def predict(args: argparse.Namespace) -> int:
    paths = find_images(args.inputs)
    runner = build_runner(args)
    os.makedirs(args.output_dir, exist_ok=True)
    coco, used = CocoResults(runner), set()

    def on_result(path, rgb, detections: Detections) -> None:
        detections = detections.above(args.score_thresh)
        coco.add(path, detections)
        shown = detections.above(args.draw_thresh)
        if args.draw:
            from ..drawing import draw_boxes, save_png_atomic
            boxes = list(zip(shown.boxes.tolist(), shown.classes.tolist(), shown.scores.tolist()))
            save_png_atomic(draw_boxes(rgb, boxes, runner.contract.class_names),
                            _vis_path(args.output_dir, path, used))
        best = ", ".join(f"{n} {s:.2f}" for n, s in zip(shown.class_names[:3], shown.scores[:3]))
        if args.no_progress:
            print(f"{path}: {len(detections)} detection(s){': ' + best if best else ''}")

    run = predict_files(paths, lambda images: [runner.detect(x) for x in images], on_result,
                        progress=not args.no_progress)
    coco.write(args.output_dir)
    print(f"wrote {os.path.join(args.output_dir, 'coco_results.json')} ({len(coco.results)} "
          f"detections of {len(coco.images)} image(s)), coco_images.json"
          + (", vis/" if args.draw else ""))
    print(run.summary(), file=sys.stderr if run.skipped else sys.stdout)
    return run.exit_status


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: predict(args))


if __name__ == "__main__":
    sys.exit(main())
