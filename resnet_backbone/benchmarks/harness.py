"""The benchmark's harness: the shared settings and timer (``Bench``), result rows with ratios
(``timing_rows``), the machine's description and the report (save, print, render). The rows
themselves: ``classifier`` (classifier, memory, scaling), ``serving`` (serve), ``detection``
(the detectron2 rows), ``augmentation``; ``resnet_backbone.cli.benchmark`` runs them.

Every comparison times the models on the same input, interleaved (the order alternates each
repeat), and reports the median of the repeats after warm-up runs; ratio = peer time / our time
(> 1: ours is faster), from wall time and from process CPU time. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` during the step; on CPU the peak of live tensor bytes
allocated by the step, replayed from ``torch.profiler``'s allocation events (op granularity;
oneDNN scratch buffers not included).
"""
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
import torchvision

from ..fast import autocast_context, maybe_compile, optimize_for_inference, speed_up_strided_1x1

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
        """``place``, after (ours only: it acts on our ``ConvNorm``) the training fast path the
        trainers use on this device and layout."""
        return self.place(speed_up_strided_1x1(model.to(self.device), str(self.device),
                                               self.channels_last))

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """On the device, with the run's layout and compile setting."""
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


def infer_fn(bench: Bench, model, *inputs):
    """A call of ``model`` on ``inputs`` in inference mode, under the run's autocast."""
    def run():
        with torch.inference_mode(), bench.autocast():
            return model(*inputs)
    return run


def fast_model(bench: Bench, model):
    """Ours with the package's default inference fast paths, plus the run's dtype/compile."""
    return optimize_for_inference(model, dtype=bench.dtype, compile=bench.compile,
                                  device=str(bench.device))


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


#: Rows with a printer of their own (``resnet_backbone.benchmarks.serving.print_table``).
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
