"""Speed and memory of this package's networks next to their peers, in one process.

Rows (``--rows``, comma-separated; default all but serve, augmentation and loader):
  classifier  training step and inference images/s: our ResNet-D vs torchvision's resnetD.
              "ours (3x3 stride)" has torchvision's exact architecture (stride_in_1x1=False);
              "ours (paper)" is Table 1 with the stride in the 1x1 conv (fewer FLOPs);
              "ours fast" is ``optimize_for_inference`` (folded BN, channels-last);
              "ours folded BN only" isolates the channels-last gain.
  backbone    detectron2 C4 backbone forward (FrozenBN, res4 out, one 600x1000 image):
              ``build_paper_resnet`` vs detectron2's ``build_resnet_backbone``, same weights.
  detector    whole Faster R-CNN R-101-C4 inference per image: our config
              (configs/detection/faster_rcnn_R_101_C4_coco2017.yaml) vs the same config with
              detectron2's builtin backbone and Res5ROIHeads, same weights.
  memory      peak memory of each model of the rows above.
  scaling     time and memory of our nets against depth (ImageNet 18..152, CIFAR 20..1202),
              batch size and image size.
  serve       CPU serving, fp32 unless named (not in the default --rows; needs the [onnx]
              extra, detectron2 for its detector part): R-50 classifier at 224, batch 1 and 8,
              in torchvision eager, ours eager, ours fast, ONNX Runtime fp32 and ONNX Runtime
              INT8 (static QDQ quantisation, per-channel weights), with INT8's top-1 agreement
              with fp32 on held-out synthetic images; then Faster R-CNN R-50-C4 on one image in
              detectron2 eager, ours fast and ONNX Runtime. An ONNX row is timed only if its
              export passed the parity check. Weights: --weights (a tools/train_cls.py
              checkpoint), by default a network trained for a few steps on synthetic data in
              the run (random weights make agreement meaningless); the detector is untrained
              with FrozenBN calibrated on the image. See resnet_backbone/benchmarks/serving.py.
  augmentation  images/s one CPU core prepares for ImageNet training, on the same 32 JPEGs of
              500x375: the paper's augmentation as defined (resize, crop, float), ours (crop
              first, reduced JPEG decoding, uint8 out) and torchvision's RandomResizedCrop,
              with decoding alone beside them (not in the default --rows).
  loader      images/s one CPU core turns into training batches (read, decode, our
              augmentation) from an ImageNet folder and from the same files in tar shards
              (DATASETS.FORMAT shards); not in the default --rows.
  strided_1x1 our paper ResNet with and without the strided-1x1 fast path (subsample, then
              the 1x1 conv), training step and inference, in the run's --dtype and
              --channels-last, beside the choice the trainers make here
              (fast.subsampling_pays_off); not in the default --rows.

Every comparison times the models on the same input, interleaved (the order alternates each
repeat), and reports the median of ``--repeats`` runs after ``--warmup`` runs; ratio =
peer time / our time (> 1: ours is faster), from wall time and from process CPU time.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated``
during the step; on CPU the peak of live tensor bytes allocated by the step, replayed from
``torch.profiler``'s allocation events (op granularity; oneDNN scratch buffers not included).

    resnet-benchmark                      # quick CPU run (< 5 min on 2 cores)
    resnet-benchmark --full --json out.json
    resnet-benchmark --device cuda --dtype bf16 --channels-last on --compile
    resnet-benchmark --rows serve --json output/benchmark_serve.json
    resnet-benchmark --rows augmentation --json output/benchmark_augmentation.json
    resnet-benchmark --rows loader --json output/benchmark_loader.json

(``python tools/benchmark.py`` is the same.) The backbone and detector rows, and the C4 part of
the memory row, compare with detectron2's builtin models and need detectron2.
"""
import argparse
import os
import sys
import time

import torch

from ..benchmarks import classifier, harness, serving
from ..fast import DTYPES, supports_dtype
from .common import run_tool

#: Every row, in the order they run; ``--rows`` defaults to ``harness.ROWS`` (not ``serve``, nor
#: ``augmentation`` and ``loader``: the ImageNet training augmentation and the trainer's readers
#: on one core, classification layer; nor ``strided_1x1``, the fast path's check on this device).
ROWS = harness.ROWS + (serving.ROW, "augmentation", "loader", "strided_1x1")
DETECTRON2_ROWS = ("backbone", "detector")

#: The serve row's grid (both grids): classifier depth, sizes and image sets, the default
#: weights' training steps, the detector's depth and image, and (tests only) a proposal cap.
SERVE = dict(serve_depths=[50], serve_image_size=None, serve_batches=[1, 8],
             serve_train_steps=30, serve_calibration_images=32, serve_held_out_images=64,
             serve_det_depth=50, serve_det_size=(600, 1000), serve_det_proposals=None)

QUICK = dict(depths=[50], backbone_depth=50, batch=2, image_size=224, det_size=(600, 1000),
             repeats=5, warmup=1, det_repeats=2,
             scale_depths=[18, 50], scale_cifar=[20, 56], scale_batches=[1, 4],
             scale_sizes=[112, 224], scale_image_size=112, **SERVE)
FULL = dict(depths=[18, 34, 50, 101, 152], backbone_depth=101, batch=8, image_size=224,
            det_size=(600, 1000), repeats=10, warmup=2, det_repeats=5,
            scale_depths=[18, 34, 50, 101, 152], scale_cifar=[20, 32, 44, 56, 110, 1202],
            scale_batches=[1, 2, 4, 8, 16], scale_sizes=[112, 160, 224, 320, 448],
            scale_image_size=224, **SERVE)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                   help="autocast dtype for every model of the comparison (default fp32)")
    p.add_argument("--channels-last", default="off", choices=["on", "off"],
                   help="run every model (ours and peers) channels-last")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--rows", default=",".join(harness.ROWS),
                   help=f"comma-separated subset of {ROWS} (default: all but serve, augmentation, "
                        "loader and strided_1x1)")
    p.add_argument("--full", action="store_true", help="the whole grid (long); default: quick")
    p.add_argument("--depths", type=int, nargs="+",
                   help="classifier and serve row depths (18..152)")
    p.add_argument("--batch", type=int, help="classifier batch size")
    p.add_argument("--image-size", type=int, help="classifier (and serve) image size")
    p.add_argument("--serve-batches", type=int, nargs="+",
                   help="serve row: classifier batch sizes (default 1 8)")
    p.add_argument("--serve-det-size", type=int, nargs=2, metavar=("H", "W"),
                   help="serve row: the detector's image (default 600 1000)")
    p.add_argument("--weights", metavar="FILE",
                   help="serve row: the classifier's weights, a tools/train_cls.py checkpoint "
                        "(or a state dict of ours R-D); default: trained for a few steps on "
                        "synthetic data in the run")
    p.add_argument("--repeats", type=int, help="timed runs per model (median reported)")
    p.add_argument("--warmup", type=int, help="untimed runs per model first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default="output/benchmark.json", help="where to write the results")
    p.add_argument("--render", metavar="JSON", help="print the tables of a saved run as Markdown "
                   "(what BENCHMARKS.md shows) and exit; runs nothing")
    p.add_argument("--classifier-modes", default="train,inference",
                   help="classifier row: 'train', 'inference' or both (comma-separated); "
                        "training alone keeps --compile runs short")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's peak dense matrix TFLOP/s for --dtype (e.g. 989 for an "
                        "H100 SXM in bf16/fp16); adds each classifier row's share of it")
    args = p.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad or not rows:
        p.error(f"unknown row(s) {bad}; valid choices: {', '.join(ROWS)}")
    args.rows = rows
    args.classifier_modes = [m.strip() for m in args.classifier_modes.split(",") if m.strip()]
    if not args.classifier_modes or set(args.classifier_modes) - {"train", "inference"}:
        p.error("--classifier-modes takes 'train', 'inference' or 'train,inference'")
    if serving.ROW in rows and (args.device != "cpu" or args.dtype != "fp32"):
        p.error("the serve row measures CPU fp32 serving (INT8 is its own row); run it with "
                "--device cpu --dtype fp32")
    if args.weights and not os.path.isfile(args.weights):
        p.error(f"--weights {args.weights}: no such file")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available; use --device cpu")
    if args.dtype != "fp32" and not supports_dtype(args.device, args.dtype):
        p.error(f"--dtype {args.dtype} is not supported on {args.device} here; use fp32")
    grid = dict(FULL if args.full else QUICK)
    for key in ("depths", "batch", "image_size", "repeats", "warmup"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    if args.repeats is not None:
        grid["det_repeats"] = args.repeats
    if args.depths:
        grid["serve_depths"] = args.depths
    if args.image_size:
        grid["serve_image_size"] = args.image_size
    if args.serve_batches:
        grid["serve_batches"] = args.serve_batches
    if args.serve_det_size:
        grid["serve_det_size"] = tuple(args.serve_det_size)
    args.grid = grid
    return args


def detection_rows():
    """The detectron2 module of the benchmark, or a clear error if detectron2 is missing."""
    try:
        from ..benchmarks import detection
    except ImportError as e:
        raise ValueError(f"the {', '.join(DETECTRON2_ROWS)} rows compare with detectron2's "
                         f"builtin models and need detectron2 ({e}); install it (README) or use "
                         "--rows classifier,memory,scaling") from None
    return detection


def serve_rows(bench: harness.Bench, grid, weights=None) -> list:
    """The classifier part of the serve row, then its detector part (skipped, with the reason,
    without detectron2)."""
    results = serving.serve_classifier_rows(bench, grid, weights)
    try:
        module = detection_rows()
    except ValueError as e:
        print(f"[serve] detector rows skipped: {e}", file=sys.stderr)
        return results
    return results + module.serve_detector_rows(bench, grid)


def run_row(row: str, bench: harness.Bench, grid, weights=None) -> list:
    if row == serving.ROW:
        return serve_rows(bench, grid, weights)
    if row == "augmentation":
        from ..benchmarks.augmentation import augmentation_rows  # imports classification
        return augmentation_rows(repeats=max(grid["repeats"], 3))
    if row == "loader":
        from ..benchmarks.loader import loader_rows  # imports classification
        return loader_rows(repeats=max(grid["repeats"], 3))
    if row == "classifier":
        return classifier.classifier_row(bench, grid)
    if row == "scaling":
        return classifier.scaling_row(bench, grid)
    if row == "strided_1x1":
        return classifier.strided_1x1_row(bench, grid)
    if row == "memory":
        results = classifier.classifier_memory_rows(bench, grid)
        try:
            results += detection_rows().backbone_memory_rows(bench, grid)
        except ValueError as e:
            print(f"[memory] C4 backbone rows skipped: {e}", file=sys.stderr)
        classifier.add_memory_ratios(results)
        return results
    return getattr(detection_rows(), f"{row}_row")(bench, grid)


def benchmark(args) -> dict:
    if args.render:
        report = harness.render(args.render)
        serving.print_table(report["results"], tablefmt="github")
        return report
    if args.threads:
        torch.set_num_threads(args.threads)
    if set(args.rows) & set(DETECTRON2_ROWS):
        detection_rows()  # fail before any timing if detectron2 is missing
    bench = harness.Bench(args)
    start = time.time()
    results = []
    for row in args.rows:
        row_start = time.time()
        results += run_row(row, bench, args.grid, args.weights)
        print(f"[{row}] done in {time.time() - row_start:.1f} s", file=sys.stderr, flush=True)
    report = dict(command=" ".join([os.path.basename(sys.executable), *sys.argv]),
                  date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  machine=harness.machine(), device=args.device, dtype=args.dtype,
                  channels_last=args.channels_last, compile=args.compile,
                  grid=args.grid, seconds=time.time() - start, results=results)
    harness.print_table(results)
    serving.print_table(results)
    print(f"\ntotal {report['seconds']:.1f} s; ratio = peer time / our time (> 1: ours faster)")
    if args.json:
        harness.save_report(report, args.json)
        print(f"wrote {args.json}")
    return report


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> None:
        benchmark(args)
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
