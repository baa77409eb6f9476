"""The classifier, memory and scaling rows of the benchmark (``tools/benchmark.py --rows
classifier,memory,scaling``): our ResNets against torchvision's on the same input, timed and
measured with ``resnet_backbone.benchmarks.harness.Bench``."""
import copy
from typing import Dict, List

import torch
import torchvision

from ..fast import optimize_for_inference, subsample_strided_1x1, subsampling_pays_off
from ..models import build_resnet
from .harness import Bench, fast_model, infer_fn, timing_rows


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
    from ..models.analysis import count_flops
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


# -------------------------------------------------------------------- strided 1x1 row

def strided_1x1_row(bench: Bench, grid) -> List[dict]:
    """What the strided-1x1 fast path (``fast.subsample_strided_1x1``: subsample, then the 1x1
    convolution; the paper's bottleneck stride) does on this device and dtype: our paper ResNet
    with and without it, training step and inference, the run's dtype and layout; ratio = the
    plain model's time / this one's. ``auto_choice`` is what ``fast.subsampling_pays_off`` picks
    for this device and layout (the trainers apply that choice): compare it with the measured
    ratio."""
    results = []
    b, s = grid["batch"], grid["image_size"]
    for depth in grid["depths"]:
        torch.manual_seed(0)
        plain = build_resnet(depth, num_classes=1000)
        subsampled = subsample_strided_1x1(copy.deepcopy(plain))
        models = {"ours (paper), strided 1x1": bench.place(plain),
                  "ours (paper), subsampled 1x1": bench.place(subsampled)}
        x = bench.input(b, 3, s, s)
        target = torch.randint(0, 1000, (b,), generator=torch.Generator().manual_seed(0)).to(bench.device)
        for m in models.values():
            m.eval()
        inference = bench.time({k: infer_fn(bench, m, x) for k, m in models.items()})
        train = bench.time({k: train_step_fn(bench, m, x, target) for k, m in models.items()})
        auto = subsampling_pays_off(str(bench.device), bench.channels_last)
        for mode, times in (("train step", train), ("inference", inference)):
            for row in timing_rows(times, "ours (paper), strided 1x1", f" R-{depth}", b,
                                   row="strided_1x1", mode=mode, image_size=s):
                row["auto_choice"] = "subsampled" if auto else "strided"
                results.append(row)
    return results
