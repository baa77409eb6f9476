#!/usr/bin/env python
"""Helpers of ``scripts/gpu_suite.sh``: synthetic data in the real formats, the detector's
calibrated weights, ``tools/train_det.py`` with per-iteration metrics, the rows derived from
each step's outputs, and the combined report (the schema of ``resnet_backbone.benchmark``'s
``save_report``, so ``python tools/benchmark.py --render FILE`` prints it).

Subcommands (``python scripts/gpu_suite_report.py SUBCOMMAND --help``):

  env               environment facts and an import check, as a step JSON
  imagenet-folder   ImageNet-layout JPEG folder (train/ val/), written by a process pool
  coco              synthetic COCO-format detection set (shapes), written by a process pool
  cifar             synthetic CIFAR-10 in the official python-batch format
  det-builtin-opts  the overrides that turn our R-101-C4 config into detectron2's builtin twin
  det-weights       a weights file for both detectors: seeded initialisation, FrozenBN calibrated
  train-det         tools/train_det.py, with detectron2 writing metrics.json every iteration
  step              turn one step's outputs into a step JSON (rows + status), then merge
  merge             every step JSON into the combined report

Nothing here imports torch unless the subcommand needs it (``step`` and ``merge`` do not), so
a report is written even when the environment is broken.
"""
import argparse
import glob
import json
import math
import os
import statistics
import sys
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_json(path: str, data) -> None:
    """Atomically (a killed suite never leaves half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def read_json_lines(path: str) -> List[dict]:
    rows = []
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass  # a line cut by a kill
    return rows


# ------------------------------------------------------------------------------ environment

def cmd_env(args) -> int:
    import importlib
    import platform
    import subprocess
    info: Dict[str, object] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                               "pythonpath": os.environ.get("PYTHONPATH", "")}
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
    imports, failed = {}, []
    for name in ("torch", "torchvision", "numpy", "PIL", "detectron2", "detectron2.engine",
                 "detectron2.data", "detectron2.evaluation", "fvcore", "iopath", "yacs",
                 "omegaconf", "hydra", "pycocotools", "pycocotools._mask", "pycocotools.coco",
                 "termcolor", "tabulate", "tensorboard", "resnet_backbone",
                 "resnet_backbone.classification.engine", "resnet_backbone.detection",
                 "resnet_backbone.detection.trainer", "resnet_backbone.configs"):
        try:
            module = importlib.import_module(name)
            imports[name] = dict(version=str(getattr(module, "__version__", "")),
                                 file=str(getattr(module, "__file__", None) or
                                          list(getattr(module, "__path__", []))))
        except Exception as e:  # noqa: BLE001 - every failure is reported
            imports[name] = dict(error=f"{type(e).__name__}: {e}")
            failed.append(name)
    info["imports"] = imports
    machine = {}
    try:
        import PIL.Image
        info["pil_linear_shim"] = getattr(PIL.Image, "LINEAR", None) == PIL.Image.BILINEAR and \
            not PIL.__version__.startswith("9.")
        import torch
        from resnet_backbone.benchmark import machine as bench_machine
        machine = bench_machine()
        info.update(torch=torch.__version__, cuda=torch.version.cuda,
                    cuda_available=torch.cuda.is_available(), pillow=PIL.__version__,
                    cudnn=torch.backends.cudnn.version())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
            info["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2 ** 30
            info["bf16"] = torch.cuda.is_bf16_supported()
        import torchvision
        info["torchvision"] = torchvision.__version__
    except Exception as e:  # noqa: BLE001
        info["error"] = f"{type(e).__name__}: {e}"
        failed.append("machine")
    machine.update(cpu_count=os.cpu_count(), nvidia_smi=info["nvidia_smi"])
    status = "ok" if not failed else f"FAILED imports: {', '.join(failed)}"
    summary = (f"python {info['python']}, torch {info.get('torch')}, torchvision "
               f"{info.get('torchvision')}, {info.get('gpu', 'no GPU')}, {os.cpu_count()} CPUs, "
               f"pillow {info.get('pillow')} (LINEAR shim: {info.get('pil_linear_shim')}); "
               f"imports {status}")
    write_json(args.out, dict(env=info, machine=machine, summary=summary, status=status))
    print(summary)
    return 0 if not failed else 1


# ---------------------------------------------------------------------------- synthetic data

def _imagenet_chunk(job) -> int:
    """Write JPEGs number ``first .. first+count-1`` of one split (textured: the synthetic
    classes' colour and stripes, upscaled, with pixel noise, as the augmentation benchmark's)."""
    import numpy as np
    from PIL import Image
    from resnet_backbone.data.synthetic import make_synthetic
    root, split, first, count, classes, width, height, quality = job
    rng = np.random.default_rng(first + (10 ** 7 if split == "val" else 0))
    images = make_synthetic(count, image_size=64, seed=first + (10 ** 7 if split == "val" else 0)).images
    for k, img in enumerate(images):
        i = first + k
        folder = os.path.join(root, split, f"n{i % classes:08d}")
        os.makedirs(folder, exist_ok=True)
        pixels = np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).resize(
            (width, height), Image.BICUBIC), np.int16)
        pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{split}_{i:08d}.JPEG"), quality=quality)
    return count


def cmd_imagenet_folder(args) -> int:
    from multiprocessing import Pool
    width, height = (int(v) for v in args.size.split("x"))
    start = time.perf_counter()
    jobs = []
    for split, total in (("train", args.train), ("val", args.val)):
        step = max(1, math.ceil(total / (args.workers * 4)))
        jobs += [(args.root, split, first, min(step, total - first), args.classes, width, height,
                  args.quality) for first in range(0, total, step)]
    with Pool(args.workers) as pool:
        written = sum(pool.imap_unordered(_imagenet_chunk, jobs))
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(args.root, "train", "*", "*.JPEG")))
    info = dict(root=args.root, train=args.train, val=args.val, classes=args.classes,
                size=f"{width}x{height}", quality=args.quality, workers=args.workers,
                seconds=round(time.perf_counter() - start, 1),
                train_mean_kib=round(size / max(args.train, 1) / 1024, 1), written=written)
    print(json.dumps(info))
    if args.info:
        write_json(args.info, info)
    return 0


def _coco_chunk(job):
    from resnet_backbone.data.synthetic import write_shapes_coco
    out, index, count, size, classes, objects, seed = job
    json_file, _ = write_shapes_coco(os.path.join(out, f"part{index:02d}"), count, image_size=size,
                                     num_classes=classes, objects_per_image=objects, seed=seed,
                                     file_prefix=f"p{index:02d}_")
    return index, json_file


def cmd_coco(args) -> int:
    """One COCO json over parts written in parallel (``write_shapes_coco``, a seed per part);
    file names are relative to ``<out>``: ``partNN/images/pNN_000001.png``."""
    from multiprocessing import Pool
    h, w = (int(v) for v in args.size.split("x"))
    start = time.perf_counter()
    parts = min(args.workers, args.images)
    per = [args.images // parts + (1 if i < args.images % parts else 0) for i in range(parts)]
    jobs = [(args.out, i, n, (h, w), args.classes, (args.min_objects, args.max_objects), args.seed + i)
            for i, n in enumerate(per)]
    with Pool(parts) as pool:
        results = sorted(pool.map(_coco_chunk, jobs))
    merged = {"info": {"description": "resnet_backbone synthetic shapes (gpu_suite)"}, "licenses": [],
              "images": [], "annotations": [], "categories": None}
    for index, json_file in results:
        with open(json_file) as f:
            part = json.load(f)
        ids = {}
        for image in part["images"]:
            ids[image["id"]] = len(merged["images"]) + 1
            merged["images"].append(dict(image, id=ids[image["id"]],
                                         file_name=f"part{index:02d}/images/{image['file_name']}"))
        for ann in part["annotations"]:
            merged["annotations"].append(dict(ann, id=len(merged["annotations"]) + 1,
                                              image_id=ids[ann["image_id"]]))
        merged["categories"] = part["categories"]
    json_file = os.path.join(args.out, "annotations.json")
    write_json(json_file, merged)
    info = dict(json=json_file, image_root=args.out, images=len(merged["images"]),
                annotations=len(merged["annotations"]), size=f"{h}x{w}", classes=args.classes,
                seconds=round(time.perf_counter() - start, 1))
    print(json.dumps(info))
    if args.info:
        write_json(args.info, info)
    return 0


def cmd_cifar(args) -> int:
    from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches
    start = time.perf_counter()
    folder = write_cifar10_batches(args.out, make_synthetic(args.train, seed=0),
                                   make_synthetic(args.test, seed=1))
    print(json.dumps(dict(folder=str(folder), train=args.train, test=args.test,
                          seconds=round(time.perf_counter() - start, 1))))
    return 0


# --------------------------------------------------------------------------------- detection

#: What ``resnet_backbone.detection.benchmark.detection_cfg(..., builtin=True)`` sets.
BUILTIN_KEYS = ("MODEL.BACKBONE.NAME", "MODEL.ROI_HEADS.NAME", "MODEL.RESNETS.DEPTH",
                "MODEL.RESNETS.STRIDE_IN_1X1", "MODEL.RESNETS.NORM", "MODEL.RESNETS.OUT_FEATURES",
                "MODEL.RESNETS.RES5_DILATION", "MODEL.BACKBONE.FREEZE_AT")


def _flatten(node, prefix="") -> Dict[str, object]:
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _yacs_value(value) -> str:
    """A value as a ``KEY VALUE`` command-line override (yacs literal_evals it)."""
    if isinstance(value, (list, tuple)):
        return repr(list(value)) if isinstance(value, list) else repr(tuple(value))
    return str(value)


def cmd_det_builtin_opts(args) -> int:
    """Print ``KEY<TAB>VALUE`` lines: the overrides of tools/benchmark.py's detector row that
    make our config detectron2's builtin R-101-C4 (checked: the two configs differ in nothing
    else)."""
    from resnet_backbone.detection.benchmark import detection_cfg
    ours, builtin = (_flatten(detection_cfg(args.depth, b)) for b in (False, True))
    differ = sorted(k for k in set(ours) | set(builtin) if ours.get(k) != builtin.get(k))
    extra = [k for k in differ if k not in BUILTIN_KEYS]
    if extra:
        print(f"error: the builtin config also differs in {extra}", file=sys.stderr)
        return 1
    for key in BUILTIN_KEYS:
        print(f"{key}\t{_yacs_value(builtin[key])}")
    return 0


def cmd_det_weights(args) -> int:
    """Seeded initial weights of our detector with every FrozenBN calibrated on ``--images``
    training images (as the benchmark's detection_pair does), saved as ``{"model": state}``:
    both runs of step 5 load this file, whose names are also those of detectron2's builtin
    detector. The config refuses FrozenBN without weights (random statistics make the loss
    diverge), which is why a file is needed at all."""
    import numpy as np
    import torch
    from detectron2.modeling import build_model
    from PIL import Image
    from resnet_backbone.detection import get_detection_cfg
    from resnet_backbone.models.layers import init_bn_statistics_from_data
    start = time.perf_counter()
    cfg = get_detection_cfg(args.config, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device, *args.opts])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with open(args.coco_json) as f:
        images = json.load(f)["images"][:args.images]
    short, longest = cfg.INPUT.MIN_SIZE_TRAIN[0], cfg.INPUT.MAX_SIZE_TRAIN
    inputs = []
    for image in images:
        rgb = np.asarray(Image.open(os.path.join(args.image_root, image["file_name"])).convert("RGB"))
        h, w = rgb.shape[:2]
        scale = min(short / min(h, w), longest / max(h, w))
        nh, nw = int(round(h * scale)), int(round(w * scale))
        bgr = torch.from_numpy(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1))).float()
        bgr = torch.nn.functional.interpolate(bgr[None], size=(nh, nw), mode="bilinear",
                                              align_corners=False)[0]
        inputs.append({"image": bgr.to(args.device), "height": h, "width": w})
    init_bn_statistics_from_data(model, lambda: model(inputs))
    regions = []
    handle = model.roi_heads.register_forward_pre_hook(
        lambda module, a: regions.append([len(p) for p in a[2]]))
    with torch.no_grad():
        model(inputs)
    handle.remove()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": state}, args.out)
    print(json.dumps(dict(weights=args.out, tensors=len(state), calibrated_on=len(inputs),
                          proposals_per_image_after_calibration=regions[0] if regions else None,
                          seconds=round(time.perf_counter() - start, 1))))
    return 0


def cmd_train_det(args) -> int:
    """``tools/train_det.py`` (``resnet_backbone.cli.train_det.main``) in this process; the suite
    passes ``LOG_PERIOD 1``, so that metrics.json has the ``time`` and ``data_time`` of every
    iteration as it was (a write covers the iterations since the last one)."""
    from resnet_backbone.cli.train_det import main
    return main(args.rest)


# ---------------------------------------------------------------------------- step outcomes

def last_line(path: str, width: int = 400) -> str:
    """The last non-empty line of a file (a plain step's summary), cut to ``width``."""
    if not path or not os.path.isfile(path):
        return ""
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1][:width] if lines else ""


def _median(values):
    return statistics.median(values) if values else None


def det_run_stats(output_dir: str, skip: int) -> dict:
    rows = [r for r in read_json_lines(os.path.join(output_dir, "metrics.json")) if "time" in r]
    kept = [r for r in rows if r["iteration"] >= skip]
    stats = dict(iterations_logged=len(rows), last_iteration=max((r["iteration"] for r in rows), default=None),
                 timed_iterations=len(kept),
                 median_s_per_iter=_median([r["time"] for r in kept]),
                 median_data_time_s=_median([r["data_time"] for r in kept if "data_time" in r]),
                 mean_s_per_iter=statistics.fmean([r["time"] for r in kept]) if kept else None)
    log = os.path.join(output_dir, "log.txt")
    if os.path.isfile(log):
        with open(log, errors="replace") as f:
            for line in f:
                if "Overall training speed:" in line and "s / it" in line:
                    try:
                        stats["d2_overall_s_per_iter"] = float(line.rsplit("(", 1)[1].split()[0])
                    except (IndexError, ValueError):
                        pass
    return stats


def cls_rate(metrics: str, batch: int, skip: int) -> dict:
    """Steady-state images/s of a train_cls run from its metrics.json: (iterations after
    ``skip``) x batch / (time of the last training row - time of the row at ``skip``)."""
    rows = [r for r in read_json_lines(metrics) if "images_per_s" in r]
    base = [r for r in rows if r["iteration"] == skip]
    last = rows[-1] if rows else None
    out = dict(logged_rows=[(r["iteration"], round(r["images_per_s"], 1)) for r in rows],
               last_iteration=last["iteration"] if last else None)
    if base and last and last["iteration"] > skip:
        seconds = last["time"] - base[0]["time"]
        out.update(measured_iterations=f"{skip + 1}-{last['iteration']}",
                   steady_images_per_s=(last["iteration"] - skip) * batch / seconds,
                   steady_seconds=seconds)
    return out


def bench_rows(path: str, setting: str) -> List[dict]:
    with open(path) as f:
        report = json.load(f)
    rows = []
    for r in report["results"]:
        rest = {k: v for k, v in r.items() if k not in ("row", "model")}
        rows.append(dict(row=r["row"], model=r["model"], setting=setting, **rest))
    return rows


def find_row(rows: List[dict], row: str, model: str, mode: Optional[str] = None) -> Optional[dict]:
    for r in rows:
        if r.get("row") == row and r.get("model") == model and (mode is None or r.get("mode") == mode):
            return r
    return None


def load_step(steps_dir: str, name: str) -> Optional[dict]:
    path = os.path.join(steps_dir, f"{name}.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return None


def cmd_step(args) -> int:
    """Write ``<steps-dir>/<name>.json``: the step's command, return code, wall time, status,
    its rows (derived from what the step wrote) and a one-line summary; print the summary."""
    p = dict(kv.split("=", 1) for kv in args.param)
    status = ("ok" if args.rc == 0 else "timeout" if args.rc in (124, 137) else
              "skipped" if args.rc == -1 else f"failed (rc {args.rc})")
    rows, extra, summary = [], {}, ""
    try:
        if args.kind == "bench":
            if os.path.isfile(p["json"]):
                rows = bench_rows(p["json"], p["setting"])
                parts = [f"{r['model']} {r.get('ratio_vs_peer', 0):.3f}x" for r in rows
                         if r["row"] in ("backbone", "detector") and not r["model"].startswith("detectron2")]
                cls = [f"{r['model']} {r['mode']} {r['images_per_s']:.4g} img/s" for r in rows
                       if r["row"] == "classifier" and r["model"].startswith("ours (paper)")]
                summary = "; ".join(parts + cls)
            elif status == "ok":
                status = "failed (no JSON written)"
        elif args.kind == "cls":
            extra = cls_rate(p["metrics"], int(p["batch"]), int(p["skip"]))
            extra.update({k: v for k, v in p.items() if k not in ("metrics", "source")})
            model_only = None
            model_step = load_step(args.steps_dir, p["model_only_step"])
            if model_step:
                ref = find_row(model_step.get("rows", []), "classifier", "ours (paper) R-50", "train step")
                model_only = ref["images_per_s"] if ref else None
            rate = extra.get("steady_images_per_s")
            ratio = rate / model_only if rate and model_only else None
            source = p.get("source", "ImageNet-layout JPEG folder")
            rows = [dict(row="train_cls end to end", model=f"ours (paper) R-50, train_cls, {source}",
                         setting=p.get("setting", ""), batch=int(p["batch"]), workers=int(p["workers"]),
                         iterations=int(p["iters"]), measured_iterations=extra.get("measured_iterations"),
                         images_per_s=rate, model_only_images_per_s=model_only,
                         ratio_vs_model_only=ratio, target=">= 0.90",
                         verdict=None if ratio is None else ("met" if ratio >= 0.90 else "not met"),
                         status=status)]
            summary = (f"{rate:.4g} img/s steady (iterations {extra.get('measured_iterations')}); model-only "
                       f"{model_only if model_only is None else f'{model_only:.4g}'} img/s; ratio "
                       f"{'n/a' if ratio is None else f'{ratio:.3f}'}" if rate else
                       f"no steady-state rate (last iteration {extra.get('last_iteration')})")
        elif args.kind == "det":
            skip = int(p["skip"])
            ours, peer = det_run_stats(p["ours"], skip), det_run_stats(p["builtin"], skip)
            extra = dict(ours=ours, builtin=peer, **{k: v for k, v in p.items() if k not in ("ours", "builtin")})
            o, b = ours["median_s_per_iter"], peer["median_s_per_iter"]
            for name, st, rc in (("ours (PaperRes5ROIHeads)", ours, p.get("rc_ours")),
                                 ("detectron2 builtin", peer, p.get("rc_builtin"))):
                s = st["median_s_per_iter"]
                rows.append(dict(row="train_det", model=f"{name} Faster R-CNN R-101-C4",
                                 setting=p.get("setting", ""), batch=int(p["batch"]),
                                 image_size=p.get("image_size"), iterations=int(p["iters"]),
                                 timed_iterations=st["timed_iterations"],
                                 median_s_per_iter=s, median_data_time_s=st["median_data_time_s"],
                                 d2_overall_s_per_iter=st.get("d2_overall_s_per_iter"),
                                 ratio_vs_peer=(b / s) if (s and b) else None, target=">= 1.00",
                                 run_rc=None if rc is None else int(rc)))
            ratio = b / o if (o and b) else None
            rows[0]["verdict"] = None if ratio is None else ("met" if ratio >= 1.0 else "not met")
            rows[1]["verdict"] = None
            summary = (f"ours {o:.4f} s/it, builtin {b:.4f} s/it (median of iterations >= {skip}); "
                       f"builtin/ours {ratio:.3f}" if ratio else
                       f"incomplete: ours {o}, builtin {b} s/it")
        elif args.kind == "cifar":
            metrics = read_json_lines(p["metrics"])
            train = [r for r in metrics if "train_loss" in r]
            val = [r for r in metrics if "val_top1_err" in r]
            target = int(p["target_iters"])
            reached = max((r["iteration"] for r in train), default=0)
            finished = args.rc == 0 and reached >= target
            start = float(p["start_time"])
            last_time = max((r["time"] for r in metrics), default=None)
            rows = [dict(row="cifar schedule", model=p["model"], setting=p.get("setting", ""),
                         batch=int(p["batch"]), iterations_target=target, iterations_reached=reached,
                         log_period=int(p.get("log_period", 0)) or None,
                         finished=finished, wall_s=args.wall if finished else None,
                         elapsed_s=args.wall, last_log_s=None if last_time is None else last_time - start,
                         timeout_s=int(p["timeout"]),
                         last_val_top1_err=val[-1]["val_top1_err"] if val else None,
                         status="finished" if finished else "not finished")]
            summary = (f"{p['model']}: finished {target} iterations in {args.wall:.0f} s" if finished else
                       f"{p['model']}: not finished, reached iteration {reached} (last logged; "
                       f"logged every {p.get('log_period', '?')}) of {target} in "
                       f"{args.wall:.0f} s (timeout {p['timeout']} s)")
        elif args.kind == "plain":
            summary = last_line(args.log)
        elif args.kind == "env":
            if os.path.isfile(p["json"]):
                with open(p["json"]) as f:
                    env = json.load(f)
                extra, summary = env, env.get("summary", "")
                if env.get("status", "ok") != "ok" and status == "ok":
                    status = env["status"]
    except Exception as e:  # noqa: BLE001 - a broken output never loses the step's record
        summary = f"could not read the step's outputs: {type(e).__name__}: {e}"
        if status == "ok":
            status = "failed (outputs unreadable)"
    record = dict(step=args.name, title=args.title, command=args.command,
                  date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(args.started or time.time())),
                  rc=args.rc, wall_s=round(args.wall, 1), status=status, summary=summary,
                  rows=rows, extra=extra)
    write_json(os.path.join(args.steps_dir, f"{args.name}.json"), record)
    line = f"[{args.name}] {status:<8} {args.wall:7.1f} s  {args.title}: {summary}"
    print(line)
    with open(os.path.join(args.steps_dir, "summary.txt"), "a") as f:
        f.write(line + "\n")
    return 0


def cmd_merge(args) -> int:
    steps = []
    for path in sorted(glob.glob(os.path.join(args.steps_dir, "*.json"))):
        with open(path) as f:
            steps.append(json.load(f))
    env = next((s for s in steps if s["step"].startswith("1")), None)
    machine = dict((env or {}).get("extra", {}).get("machine") or {})
    machine.setdefault("torch", "unknown")
    machine.setdefault("threads", os.cpu_count())
    results = [r for s in steps for r in s.get("rows", [])]
    settings = json.loads(args.settings) if args.settings else {}
    report = dict(command=args.command, date=args.date, machine=machine, device=settings.get("device"),
                  dtype="per row (setting)", channels_last="per row (setting)", compile=False,
                  grid=settings, seconds=time.time() - args.started,
                  environment=(env or {}).get("extra", {}).get("env"),
                  steps=[{k: v for k, v in s.items() if k not in ("rows",)} for s in steps],
                  results=results)
    write_json(args.out, report)
    return 0


# ------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("env")
    s.add_argument("--out", required=True)
    s = sub.add_parser("imagenet-folder")
    s.add_argument("--root", required=True)
    s.add_argument("--train", type=int, required=True)
    s.add_argument("--val", type=int, required=True)
    s.add_argument("--classes", type=int, default=1000)
    s.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    s.add_argument("--quality", type=int, default=90)
    s.add_argument("--workers", type=int, default=os.cpu_count())
    s.add_argument("--info")
    s = sub.add_parser("coco")
    s.add_argument("--out", required=True)
    s.add_argument("--images", type=int, required=True)
    s.add_argument("--size", default="480x640", help="HEIGHTxWIDTH")
    s.add_argument("--classes", type=int, default=5)
    s.add_argument("--min-objects", type=int, default=1)
    s.add_argument("--max-objects", type=int, default=6)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=os.cpu_count())
    s.add_argument("--info")
    s = sub.add_parser("cifar")
    s.add_argument("--out", required=True)
    s.add_argument("--train", type=int, default=50000)
    s.add_argument("--test", type=int, default=10000)
    s = sub.add_parser("det-builtin-opts")
    s.add_argument("--depth", type=int, default=101)
    s = sub.add_parser("det-weights")
    s.add_argument("--config", required=True)
    s.add_argument("--coco-json", required=True)
    s.add_argument("--image-root", required=True)
    s.add_argument("--images", type=int, default=2)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", required=True)
    s.add_argument("opts", nargs="*")
    s = sub.add_parser("train-det")
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s = sub.add_parser("step")
    s.add_argument("--steps-dir", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--title", required=True)
    s.add_argument("--kind", choices=("env", "bench", "cls", "det", "cifar", "plain"), default="plain")
    s.add_argument("--command", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--wall", type=float, required=True)
    s.add_argument("--started", type=float, default=None)
    s.add_argument("--param", action="append", default=[], help="KEY=VALUE")
    s.add_argument("--log", default="", help="the step's output (its last line: a plain step's summary)")
    s = sub.add_parser("merge")
    s.add_argument("--steps-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--date", required=True)
    s.add_argument("--started", type=float, required=True)
    s.add_argument("--settings", default="")
    args = p.parse_args(argv)
    if args.cmd == "train-det" and args.rest[:1] == ["--"]:
        args.rest = args.rest[1:]
    return globals()["cmd_" + args.cmd.replace("-", "_")](args)


if __name__ == "__main__":
    sys.exit(main())
