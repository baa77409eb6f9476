#!/usr/bin/env python
"""Speed and memory of this package's networks next to their peers, in one process.

Rows (``--rows``, comma-separated; default all):
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

Every comparison times the models on the same input, interleaved (the order alternates each
repeat), and reports the median of ``--repeats`` runs after ``--warmup`` runs; ratio =
peer time / our time (> 1: ours is faster), from wall time and from process CPU time.
Peak memory: on CUDA ``torch.cuda.max_memory_allocated``
during the step; on CPU the peak of live tensor bytes allocated by the step, replayed from
``torch.profiler``'s allocation events (op granularity; oneDNN scratch buffers not included).

    python tools/benchmark.py                      # quick CPU run (< 5 min on 2 cores)
    python tools/benchmark.py --full --json out.json
    python tools/benchmark.py --device cuda --dtype bf16 --channels-last on --compile
"""
import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple


import torch
import torchvision

from resnet_backbone import build_resnet
from resnet_backbone.fast import (DTYPES, autocast_context, maybe_compile,
                                  optimize_for_inference, supports_dtype)

ROWS = ("classifier", "backbone", "detector", "memory", "scaling")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETECTOR_CONFIG = os.path.join(REPO, "configs", "detection", "faster_rcnn_R_101_C4_coco2017.yaml")

QUICK = dict(depths=[50], backbone_depth=50, batch=2, image_size=224, det_size=(600, 1000),
             repeats=5, warmup=1, det_repeats=2,
             scale_depths=[18, 50], scale_cifar=[20, 56], scale_batches=[1, 4],
             scale_sizes=[112, 224], scale_image_size=112)
FULL = dict(depths=[18, 34, 50, 101, 152], backbone_depth=101, batch=8, image_size=224,
            det_size=(600, 1000), repeats=10, warmup=2, det_repeats=5,
            scale_depths=[18, 34, 50, 101, 152], scale_cifar=[20, 32, 44, 56, 110, 1202],
            scale_batches=[1, 2, 4, 8, 16], scale_sizes=[112, 160, 224, 320, 448],
            scale_image_size=224)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--dtype", default="fp32", choices=list(DTYPES),
                   help="autocast dtype for every model of the comparison (default fp32)")
    p.add_argument("--channels-last", default="off", choices=["on", "off"],
                   help="run every model (ours and peers) channels-last")
    p.add_argument("--compile", action="store_true", help="torch.compile every model")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    p.add_argument("--full", action="store_true", help="the whole grid (long); default: quick")
    p.add_argument("--depths", type=int, nargs="+", help="classifier row depths (18..152)")
    p.add_argument("--batch", type=int, help="classifier batch size")
    p.add_argument("--image-size", type=int, help="classifier image size")
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
    if args.dtype != "fp32" and not supports_dtype(args.device, args.dtype):
        p.error(f"--dtype {args.dtype} is not supported on {args.device} here; use fp32")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available; use --device cpu")
    grid = dict(FULL if args.full else QUICK)
    for key in ("depths", "batch", "image_size", "repeats", "warmup"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    if args.repeats is not None:
        grid["det_repeats"] = args.repeats
    args.grid = grid
    return args


class Bench:
    """Shared settings: device, dtype, layout, compile, and the interleaved timer."""

    def __init__(self, args):
        self.device = torch.device(args.device)
        self.dtype = args.dtype
        self.channels_last = args.channels_last == "on"
        self.compile = args.compile
        self.repeats = args.grid["repeats"]
        self.warmup = args.grid["warmup"]
        self.peak_tflops = args.peak_tflops
        self.classifier_modes = args.classifier_modes

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return maybe_compile(model, self.compile)

    def input(self, *shape: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self):
        return autocast_context(str(self.device), self.dtype)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def time(self, fns: Dict[str, Callable[[], object]], repeats=None, warmup=None
             ) -> Dict[str, Tuple[float, float]]:
        """(median wall seconds, median process CPU seconds) per call of each function, runs
        interleaved in alternating order. CPU time (all threads of this process) is less
        disturbed than wall time when other processes share the cores."""
        repeats = repeats or self.repeats
        warmup = self.warmup if warmup is None else warmup
        names = list(fns)
        for name in names:
            for _ in range(warmup):
                fns[name]()
        self.sync()
        wall, cpu = {n: [] for n in names}, {n: [] for n in names}
        for r in range(repeats):
            for name in (names if r % 2 == 0 else names[::-1]):
                self.sync()
                start, start_cpu = time.perf_counter(), time.process_time()
                fns[name]()
                self.sync()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        return {n: (statistics.median(wall[n]), statistics.median(cpu[n])) for n in names}

    def peak_memory(self, fn: Callable[[], object]) -> int:
        """Peak bytes allocated by one call of ``fn`` above what was live before it."""
        fn()  # first call allocates lazily-created state (optimizer buffers, caches)
        if self.device.type == "cuda":
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            before = torch.cuda.memory_allocated(self.device)
            fn()
            self.sync()
            return torch.cuda.max_memory_allocated(self.device) - before
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        live = peak = 0
        for event in sorted(prof.events(), key=lambda e: e.time_range.start):
            live += event.self_cpu_memory_usage  # allocations (+) and frees (-) of each op
            peak = max(peak, live)
        return peak


def timing_rows(times: Dict[str, Tuple[float, float]], peer: str, model_suffix: str,
                batch: int, **fields) -> List[dict]:
    """Result rows with images/s and the ratios peer time / our time (wall and CPU)."""
    peer_wall, peer_cpu = times[peer]
    row = fields.pop("row")
    return [dict(row=row, model=f"{name}{model_suffix}", **fields, batch=batch, seconds=wall,
                 images_per_s=batch / wall, ratio_vs_peer=peer_wall / wall, cpu_seconds=cpu,
                 cpu_ratio_vs_peer=peer_cpu / cpu) for name, (wall, cpu) in times.items()]


# ----------------------------------------------------------------------------- classifier row

def classifier_models(depth: int) -> Dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {"ours (paper)": build_resnet(depth, num_classes=1000),
            "ours (3x3 stride)": build_resnet(depth, num_classes=1000, stride_in_1x1=False),
            "torchvision": getattr(torchvision.models, f"resnet{depth}")()}


def train_step_fn(bench: Bench, model, x, target):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with bench.autocast():
            loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
    return step


def infer_fn(bench: Bench, model, *inputs):
    def run():
        with torch.inference_mode(), bench.autocast():
            return model(*inputs)
    return run


def fast_model(bench: Bench, model):
    """Ours with the package's default inference fast paths, plus the run's dtype/compile."""
    return optimize_for_inference(model, dtype=bench.dtype, compile=bench.compile,
                                  device=str(bench.device))


def classifier_row(bench: Bench, grid) -> List[dict]:
    results = []
    b, s = grid["batch"], grid["image_size"]
    for depth in grid["depths"]:
        raw = classifier_models(depth)
        models = {k: bench.prepare(m) for k, m in raw.items()}
        x = bench.input(b, 3, s, s)
        target = torch.randint(0, 1000, (b,), generator=torch.Generator().manual_seed(0)
                               ).to(bench.device)
        # Inference first, on the freshly initialised weights: training steps at a high lr on
        # random data can leave weights (e.g. denormals) that slow one model and not another.
        timed = []
        if "inference" in bench.classifier_modes:
            for m in models.values():
                m.eval()
            fast = fast_model(bench, raw["ours (paper)"])
            fast_tv_arch = fast_model(bench, raw["ours (3x3 stride)"])
            fold_only = bench.prepare(optimize_for_inference(
                raw["ours (paper)"], fold_bn=True, channels_last=False, device=str(bench.device)))
            infer_models = dict(models, **{"ours fast (paper)": fast,
                                           "ours fast (3x3 stride)": fast_tv_arch,
                                           "ours folded BN only (paper)": fold_only})
            timed.append(("inference",
                          bench.time({k: infer_fn(bench, m, x) for k, m in infer_models.items()})))
        if "train" in bench.classifier_modes:
            timed.insert(0, ("train step", bench.time(
                {k: train_step_fn(bench, m, x, target) for k, m in models.items()})))
        rows = []
        for mode, times in timed:
            rows += timing_rows(times, "torchvision", f" R-{depth}", b, row="classifier",
                                mode=mode, image_size=s)
        add_achieved_tflops(rows, raw, s, bench.peak_tflops)
        results += rows
    return results


def add_achieved_tflops(rows: List[dict], raw: Dict[str, torch.nn.Module], image_size: int,
                        peak_tflops=None) -> None:
    """Achieved TFLOP/s of each classifier row (and its share of ``peak_tflops``), from fvcore's
    multiply-add count of one image: 2 FLOPs per multiply-add, and a training step costs three
    forward passes (forward, gradient w.r.t. activations, gradient w.r.t. weights)."""
    from resnet_backbone.analysis import count_flops
    macs = {name: count_flops(copy.deepcopy(m).cpu().eval(), image_size)
            for name, m in raw.items()}
    for r in rows:
        arch = ("ours (3x3 stride)" if "(3x3 stride)" in r["model"] else
                "ours (paper)" if "(paper)" in r["model"] else "torchvision")
        flops = 2 * macs[arch] * (3 if r["mode"] == "train step" else 1)
        r["tflops"] = r["images_per_s"] * flops / 1e12
        if peak_tflops:
            r["pct_of_peak"] = 100 * r["tflops"] / peak_tflops


# ------------------------------------------------------------------------- detectron2 rows

def detection_cfg(depth: int, builtin: bool):
    """Our C4 Faster R-CNN config; ``builtin`` swaps in detectron2's backbone and res5 head
    with the same architecture (depth, stride in 1x1, FrozenBN, freeze at 2, res4 out)."""
    from resnet_backbone.detection import get_detection_cfg
    cfg = get_detection_cfg(DETECTOR_CONFIG, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
                                              "MODEL.PAPER_RESNET.DEPTH", str(depth)])
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
    ours, peer = ours.to(bench.device), peer.to(bench.device)
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


# ------------------------------------------------------------------------------ memory rows

def memory_row(bench: Bench, grid) -> List[dict]:
    results = []
    b, s = grid["batch"], grid["image_size"]
    for depth in grid["depths"]:
        models = classifier_models(depth)
        x = bench.input(b, 3, s, s)
        target = torch.zeros(b, dtype=torch.long, device=bench.device)
        for name, raw in models.items():
            model = bench.prepare(raw)
            peak = bench.peak_memory(train_step_fn(bench, model, x, target))
            results.append(dict(row="memory", model=f"{name} R-{depth}", mode="train step",
                                batch=b, image_size=s, peak_mib=peak / 2 ** 20))
            model.eval()
            peak = bench.peak_memory(infer_fn(bench, model, x))
            results.append(dict(row="memory", model=f"{name} R-{depth}", mode="inference",
                                batch=b, image_size=s, peak_mib=peak / 2 ** 20))
            if name == "ours (paper)":
                peak = bench.peak_memory(infer_fn(bench, fast_model(bench, raw), x))
                results.append(dict(row="memory", model=f"ours fast (paper) R-{depth}",
                                    mode="inference", batch=b, image_size=s,
                                    peak_mib=peak / 2 ** 20))
    depth, (h, w) = grid["backbone_depth"], grid["det_size"]
    ours, peer = detection_pair(bench, depth, backbone_only=True)
    x = bench.input(1, 3, h, w)
    for name, model in (("ours build_paper_resnet", ours),
                        ("detectron2 build_resnet_backbone", peer),
                        ("ours fast", fast_model(bench, ours))):
        peak = bench.peak_memory(infer_fn(bench, bench.prepare(model), x))
        results.append(dict(row="memory", model=f"{name} R-{depth} C4", mode="forward",
                            batch=1, image_size=f"{h}x{w}", peak_mib=peak / 2 ** 20))
    _add_memory_ratios(results)
    return results


def _add_memory_ratios(results: List[dict]) -> None:
    """ratio_vs_peer = peer peak / our peak, per (mode, depth) group."""
    for r in results:
        depth = r["model"].split(" R-")[-1]
        peers = [p for p in results if p["mode"] == r["mode"] and p["model"].split(" R-")[-1]
                 == depth and p["model"].startswith(("torchvision", "detectron2"))]
        if peers and r["peak_mib"] > 0:
            r["ratio_vs_peer"] = peers[0]["peak_mib"] / r["peak_mib"]


def scaling_row(bench: Bench, grid) -> List[dict]:
    """Ours only: inference time, training-step time and training peak memory as one of
    depth / CIFAR depth / batch / image size grows (the others at their base value)."""
    b, s = grid["batch"], grid["scale_image_size"]
    points = [("depth", d, dict(depth=d), b, s) for d in grid["scale_depths"]]
    points += [("cifar depth", d, dict(depth=d, cifar=True), b, 32) for d in grid["scale_cifar"]]
    points += [("batch", n, dict(depth=50), n, s) for n in grid["scale_batches"]]
    points += [("image size", n, dict(depth=50), b, n) for n in grid["scale_sizes"]]
    results = []
    for axis, value, kwargs, batch, size in points:
        torch.manual_seed(0)
        model = bench.prepare(build_resnet(**kwargs, num_classes=10 if kwargs.get("cifar")
                                           else 1000))
        x = bench.input(batch, 3, size, size)
        target = torch.zeros(batch, dtype=torch.long, device=bench.device)
        train = train_step_fn(bench, model, x, target)
        peak = bench.peak_memory(train)  # first, as in the memory row (fresh optimizer state)
        t_train = bench.time({"t": train}, repeats=max(2, bench.repeats // 2))["t"][0]
        model.eval()
        t_inf = bench.time({"i": infer_fn(bench, model, x)},
                           repeats=max(2, bench.repeats // 2))["i"][0]
        name = f"ours CIFAR ResNet-{kwargs['depth']}" if kwargs.get("cifar") else \
            f"ours ResNet-{kwargs['depth']}"
        results.append(dict(row="scaling", axis=axis, value=value, model=name, batch=batch,
                            image_size=size, train_step_s=t_train, inference_s=t_inf,
                            train_peak_mib=peak / 2 ** 20))
    return results


# ------------------------------------------------------------------------------------- main

def machine() -> dict:
    info = dict(platform=platform.platform(), processor=platform.processor(),
                python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability())
    try:
        import detectron2
        info["detectron2"] = detectron2.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    return info


def print_table(results: List[dict], tablefmt: str = "simple") -> None:
    from tabulate import tabulate
    for row in ROWS:
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        keys = [k for k in rs[0] if k != "row"]
        print(f"\n== {row} ==" if tablefmt == "simple" else f"\n#### {row}\n")
        print(tabulate([[r.get(k) for k in keys] for r in rs], headers=keys, floatfmt=".3f",
                       tablefmt=tablefmt))


def render(path: str) -> dict:
    """Markdown tables and the settings of a run saved with ``--json``."""
    with open(path) as f:
        report = json.load(f)
    m = report["machine"]
    print(f"`{report['command']}` ({report['date']}; {m.get('gpu', m.get('processor') or 'CPU')}, "
          f"torch {m['torch']}, {m['threads']} threads, {report['seconds']:.0f} s)")
    print_table(report["results"], tablefmt="github")
    return report


RUNNERS = dict(classifier=classifier_row, backbone=backbone_row, detector=detector_row,
               memory=memory_row, scaling=scaling_row)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.render:
        return render(args.render)
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    start = time.time()
    results = []
    for row in args.rows:
        row_start = time.time()
        results += RUNNERS[row](bench, args.grid)
        print(f"[{row}] done in {time.time() - row_start:.1f} s", file=sys.stderr, flush=True)
    report = dict(command=" ".join([os.path.basename(sys.executable), *sys.argv]),
                  date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  machine=machine(), device=args.device, dtype=args.dtype,
                  channels_last=args.channels_last, compile=args.compile,
                  grid=args.grid, seconds=time.time() - start, results=results)
    print_table(results)
    print(f"\ntotal {report['seconds']:.1f} s; ratio = peer time / our time (> 1: ours faster)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
