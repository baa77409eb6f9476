"""Speed and memory of the package's networks next to their peers, in one process (the library
behind ``tools/benchmark.py``; the detectron2 rows are in ``resnet_backbone.detection.benchmark``).

Every comparison times the models on the same input, interleaved (the order alternates each
repeat), and reports the median of the repeats after warm-up runs; ratio = peer time / our time
(> 1: ours is faster), from wall time and from process CPU time. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` during the step; on CPU the peak of live tensor bytes
allocated by the step, replayed from ``torch.profiler``'s allocation events (op granularity;
oneDNN scratch buffers not included).
"""
import contextlib
import copy
import importlib.metadata
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torchvision

from .fast import autocast_context, maybe_compile, optimize_for_inference, speed_up_strided_1x1
from .models import build_resnet

#: Row names, in the order they run and print.
ROWS = ("classifier", "backbone", "detector", "memory", "scaling")


class Bench:
    """Shared settings: device, dtype, layout, compile, and the timer.

    The timer is ours, not ``torch.utils.benchmark.Timer``: it interleaves the compared models
    round by round (alternating their order) and also reads process CPU time, so that a busy
    machine slows every model of a comparison alike.
    """

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
        """On the device, with the run's layout and compile setting, and (ours only: it acts on
        our ``ConvNorm``) the training fast path the trainers use on this device."""
        model = speed_up_strided_1x1(model.to(self.device), str(self.device))
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
    from .models.analysis import count_flops
    macs = {name: count_flops(copy.deepcopy(m).cpu().eval(), image_size)
            for name, m in raw.items()}
    for r in rows:
        arch = ("ours (3x3 stride)" if "(3x3 stride)" in r["model"] else
                "ours (paper)" if "(paper)" in r["model"] else "torchvision")
        flops = 2 * macs[arch] * (3 if r["mode"] == "train step" else 1)
        r["tflops"] = r["images_per_s"] * flops / 1e12
        if peak_tflops:
            r["pct_of_peak"] = 100 * r["tflops"] / peak_tflops



# ------------------------------------------------------------------------------ memory rows

def classifier_memory_rows(bench: Bench, grid) -> List[dict]:
    """Peak memory of a training step and of inference of each classifier of the classifier row."""
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
    return results


def add_memory_ratios(results: List[dict]) -> None:
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



# ------------------------------------------------------------------------------------ report

def machine() -> dict:
    info = dict(platform=platform.platform(), processor=platform.processor(),
                python=platform.python_version(), torch=torch.__version__,
                torchvision=torchvision.__version__, threads=torch.get_num_threads(),
                cpu_capability=torch.backends.cpu.get_cpu_capability())
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):  # without importing it
        info["detectron2"] = importlib.metadata.version("detectron2")
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(OSError):
        info["loadavg"] = os.getloadavg()
    return info


#: Rows with a printer of their own (``resnet_backbone.benchmark_serving.print_table``).
OWN_PRINTERS = ("serve",)


def print_table(results: List[dict], tablefmt: str = "simple") -> None:
    """One table per row, in the order the rows ran (but those in ``OWN_PRINTERS``)."""
    from tabulate import tabulate
    for row in dict.fromkeys(r["row"] for r in results):
        if row in OWN_PRINTERS:
            continue
        rs = [r for r in results if r["row"] == row]
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


def save_report(report: dict, path: str) -> None:
    """A run's report as JSON (what ``--render`` reads)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1, default=str)
