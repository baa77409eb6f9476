#!/usr/bin/env python
"""Measure the appendix's detection improvements (box refinement, global context, multi-scale
testing): what they cost at the paper's scale, and what they change on the demo.

    python scripts/measure_appendix.py cost [--images 3] [--json out.json]   # ~25 min, 2 cores
    python scripts/measure_appendix.py ap [--json out.json]                  # ~20 min, 2 cores
    python scripts/measure_appendix.py render out.json                       # markdown table

``cost``: the paper's ResNet-101 C4 detector (faster_rcnn_R_101_C4_coco2014.yaml, random
weights with every FrozenBN calibrated on the image, so that the RPN gives its 300 proposals as
a trained one does; the rows report the regions the RoI head pooled) on CPU at the paper's test
scale (shorter side 600, longer at most 1000), one image at a time: seconds per image and the
peak resident memory of each test-time variant, each in its own process so that the peaks do not
mix, on the inputs of ``SIZES``.

``ap``: the demo (``python tools/train_det.py``: synthetic shapes, ResNet-18 C4 from scratch,
300 iterations) trained twice, as it is and with global context, and each model evaluated on
the held-out images with every test-time variant. The pyramid and the scale-selection size are
the paper's scaled to the demo's test scale (x 160/600). A small synthetic set: it shows that the
code paths train and what they do to this model, not what they do on COCO.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "configs" / "detection" / "faster_rcnn_R_101_C4_coco2014.yaml"
PAPER_SCALES = "(200, 400, 600, 800, 1000)"
DEMO_SCALES = "(53, 107, 160, 213, 267)"  # the paper's x 160/600
MULTISCALE = ["MODEL.META_ARCHITECTURE", "PaperRCNN"]
REFINE = ["MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True"]
ROI_POOL_MAXOUT = ["MODEL.PAPER_IMPROVEMENTS.MAXOUT_AFTER_RES5", "False"]
NO_CAP = ["MODEL.PAPER_IMPROVEMENTS.PYRAMID_MAX_SIZE", "0"]
#: Inputs at the paper's test scale: a typical COCO image, the largest the 1000-pixel cap lets
#: through at 600, and a 1:5 panorama (shorter side 200 after the cap), whose pyramid's
#: 1000-pixel level would be 1000 x 5000 without PYRAMID_MAX_SIZE.
SIZES = ("600x800", "600x1000", "200x1000")


def test_time_variants(scales: str, selection_size: str) -> dict:
    """Config overrides of each test-time variant: single-scale, refinement, the pyramid with
    maxout after res5 (the paper) and after RoI pooling (the cheaper order), and both."""
    pyramid = MULTISCALE + ["MODEL.PAPER_IMPROVEMENTS.TEST_SCALES", scales,
                            "MODEL.PAPER_IMPROVEMENTS.SCALE_SELECTION_SIZE", selection_size]
    return {
        "single-scale": [],
        "box refinement": REFINE,
        "multi-scale (maxout after res5)": pyramid,
        "multi-scale (maxout after RoI pooling)": pyramid + ROI_POOL_MAXOUT,
        "refinement + multi-scale": REFINE + pyramid,
    }


def cost_variants() -> dict:
    """The paper-scale test-time variants, and the pyramid without its longer-side cap."""
    variants = test_time_variants(PAPER_SCALES, "224")
    variants["multi-scale, no longer-side cap"] = variants["multi-scale (maxout after res5)"] + NO_CAP
    return variants


def cost_one(variant: str, height: int, width: int, images: int) -> dict:
    """Seconds per image (median after one warm-up) and peak RSS of one variant, in this
    process."""
    import torch
    from detectron2.modeling import build_model

    from resnet_backbone.detection import get_detection_cfg
    from resnet_backbone.models.layers import init_bn_statistics_from_data

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    cfg = get_detection_cfg(str(PAPER_CONFIG), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
                                                *cost_variants()[variant]])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = [{"image": torch.rand(3, height, width, generator=generator) * 255,
               "height": height, "width": width} for _ in range(images + 1)]
    # Untrained FrozenBN normalises nothing and the RPN collapses to a proposal or none: set
    # the statistics from one single-scale pass (a pyramid pass would set each layer from its
    # last call: the largest scale, or res5 on an empty set of regions).
    test_scales, model.test_scales = getattr(model, "test_scales", ()), ()
    init_bn_statistics_from_data(model, lambda: model([inputs[0]]))
    if test_scales:
        model.test_scales = test_scales
    pooled = []  # regions the RoI head pools per call (the pooler's boxes)
    model.roi_heads.pooler.register_forward_hook(
        lambda module, args, output: pooled.append(sum(len(b) for b in args[1])))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, regions, detections = [], [], []
    with torch.no_grad():
        for item in inputs:
            pooled.clear()
            start = time.perf_counter()
            (output,) = model([item])
            times.append(time.perf_counter() - start)
            regions.append(sum(pooled))
            detections.append(len(output["instances"]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    measured = sorted(times[1:])
    return {"variant": variant, "image": f"{height}x{width}", "s_per_image": measured[len(measured) // 2],
            "peak_rss_gib": peak / 2**20, "inference_rss_growth_gib": (peak - rss_before) / 2**20,
            "pooled_regions_per_image": min(regions[1:]), "detections_per_image": min(detections[1:])}


def cost(args) -> list:
    rows = []
    for height, width in (map(int, size.split("x")) for size in args.sizes):
        for variant in args.variants or cost_variants():
            proc = subprocess.run([sys.executable, __file__, "cost-one", "--variant", variant,
                                   "--size", str(height), str(width), "--images", str(args.images)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"error: {variant} at {height}x{width} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{row['image']:>9} {variant:<40} {row['s_per_image']:7.2f} s/image  "
                  f"peak RSS {row['peak_rss_gib']:.2f} GiB  {row['pooled_regions_per_image']} "
                  f"regions pooled", flush=True)
    return rows


def run_train_det(*opts) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_det.py"), *opts],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"error: train_det.py {' '.join(opts)} failed:\n{proc.stderr[-3000:]}")


def ap(args) -> list:
    rows = []
    work = Path(args.work or tempfile.mkdtemp(prefix="appendix_ap_"))
    for trained, train_opts in (("baseline", []), ("global context", [
            "MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True"])):
        out = work / trained.replace(" ", "_")
        if not (out / "model_final.pth").is_file():
            start = time.perf_counter()
            run_train_det(*train_opts, "OUTPUT_DIR", str(out))
            print(f"trained {trained} in {time.perf_counter() - start:.0f} s", flush=True)
        for variant, opts in test_time_variants(DEMO_SCALES, "60").items():
            eval_dir = out / ("eval_" + "".join(c if c.isalnum() else "_" for c in variant))
            start = time.perf_counter()
            run_train_det("--eval-only", *train_opts, *opts, "MODEL.WEIGHTS",
                          str(out / "model_final.pth"), "OUTPUT_DIR", str(eval_dir))
            seconds = time.perf_counter() - start
            box = json.loads((eval_dir / "results.json").read_text())["results"]["shapes_demo_val"]["bbox"]
            rows.append({"trained": trained, "test": variant, "AP50": box["AP50"], "AP": box["AP"],
                         "eval_s": seconds})
            print(f"{trained:<15} {variant:<40} AP50 {box['AP50']:5.1f}  AP {box['AP']:5.1f}  "
                  f"({seconds:.0f} s for 100 images and start-up)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cost")
    c.add_argument("--images", type=int, default=3, help="timed images per variant (after one warm-up)")
    c.add_argument("--sizes", nargs="+", default=list(SIZES), help="HEIGHTxWIDTH inputs")
    c.add_argument("--variants", nargs="+", choices=list(cost_variants()),
                   help="default: all")
    one = sub.add_parser("cost-one")
    one.add_argument("--variant", required=True)
    one.add_argument("--size", type=int, nargs=2, required=True)
    one.add_argument("--images", type=int, default=3)
    r = sub.add_parser("render", help="print a --json file's rows as a markdown table")
    r.add_argument("file")
    a = sub.add_parser("ap")
    a.add_argument("--work", help="folder for the two demo runs (kept; reused when trained)")
    for p in (c, a):
        p.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    if args.command == "cost-one":
        print(json.dumps(cost_one(args.variant, *args.size, args.images)))
        return
    if args.command == "render":
        print(render(json.loads(Path(args.file).read_text())))
        return
    rows = cost(args) if args.command == "cost" else ap(args)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "date": time.strftime(
            "%Y-%m-%d"), "cpu": cpu_name(), "commit": git_commit(), "rows": rows}, indent=1) + "\n")


def render(result: dict) -> str:
    """The rows of a ``--json`` file as a markdown table (the columns of its first row), with
    its command, date and CPU."""
    rows = result["rows"]
    columns = list(rows[0])
    cell = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = [f"`{result['command']}` ({result['date']}, {result['cpu']}, commit "
             f"{result.get('commit', 'not recorded')})", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def git_commit() -> str:
    """The checkout's commit, with "+changes" when the tree differs from it."""
    run = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout
    return run("rev-parse", "--short", "HEAD").strip() + ("+changes" if run("status", "--porcelain",
                                                                              "--untracked-files=no") else "")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
