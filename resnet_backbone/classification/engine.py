"""The classification trainer: the paper's SGD recipes with exact resume.

Exact resume: the order of training samples is a function of (SEED, epoch) and each sample's
augmentation a function of (SEED, epoch, position), so a run resumed from iteration k sees the
same batches (the consumed ones are skipped, not loaded) with the same lr, optimizer state,
schedule state and metric accumulators as the uninterrupted run.
"""
import contextlib
import csv
import json
import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoint import (CheckpointError, load_checkpoint_file, load_state_dict_checked,
                          save_checkpoint_atomic)
from ..distributed import all_reduce_sum, get_local_rank, get_rank, get_world_size, synchronize
from ..model_zoo import create_model
from .data import ArrayDataset, build_datasets, check_num_classes
from .evaluate import evaluate
from .transforms import CifarTrainTransform, ImageNetTrainTransform, Normalizer, TestViews

logger = logging.getLogger("resnet_backbone.cls")
CKPT_RE = re.compile(r"^model_(\d{7})\.pth$")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- model
def build_model(cfg) -> nn.Module:
    """``create_model(MODEL.NAME, ...)`` with the options that network takes."""
    name, kw = cfg.MODEL.NAME, {"num_classes": cfg.MODEL.NUM_CLASSES}
    if name != "vgg16":
        kw["norm"] = cfg.MODEL.NORM
    if name.startswith(("resnet", "plain")):
        kw["stride_in_1x1"] = cfg.MODEL.STRIDE_IN_1X1
    if cfg.MODEL.SHORTCUT:
        if not name.startswith(("resnet", "cifar_resnet")):
            raise ValueError(f"MODEL.SHORTCUT applies to residual nets only; {name} has none "
                             "(set MODEL.SHORTCUT \"\")")
        kw["shortcut"] = cfg.MODEL.SHORTCUT
    return create_model(name, **kw)


def load_model_weights(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Strict load: a ``CheckpointError`` lists every missing, unexpected and shape-mismatched
    entry (check MODEL.NAME / MODEL.NUM_CLASSES / MODEL.SHORTCUT against the checkpoint)."""
    load_state_dict_checked(model, state, strict=True, source=source)


# ----------------------------------------------------------------------------- data
def sample_seed(seed: int, epoch: int, position: int) -> int:
    return ((seed * 1_000_003 + epoch) * 10_000_019 + position) % (2 ** 63 - 1)


class TrainBatchSampler:
    """Batches of (index, augmentation seed) for iterations ``start_iter .. max_iter - 1``.

    Epoch e is ``randperm(n)`` from a generator seeded with (seed, e); global batch k of the epoch
    is its slice [k*B, (k+1)*B) (the last partial batch is dropped), and process r of W takes the
    r-th of W equal parts, so any number of processes sees the same global batches.
    """

    def __init__(self, num_samples: int, global_batch: int, *, seed: int, start_iter: int,
                 max_iter: int, rank: int = 0, world_size: int = 1):
        self.batches_per_epoch = num_samples // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is larger than the training "
                             f"set ({num_samples} images)")
        self.n, self.batch, self.seed = num_samples, global_batch, seed
        self.start, self.stop, self.rank, self.world = start_iter, max_iter, rank, world_size

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        per = self.batch // self.world
        perm, perm_epoch = None, -1
        for it in range(self.start, self.stop):
            epoch, k = divmod(it, self.batches_per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
                perm, perm_epoch = torch.randperm(self.n, generator=g), epoch
            lo = k * self.batch + self.rank * per
            yield [(int(perm[p]), sample_seed(self.seed, epoch, p)) for p in range(lo, lo + per)]


class AugmentedDataset(Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key
        img, label = self.base[index]
        if img is None:  # corrupt, skipped (DATALOADER.SKIP_CORRUPT)
            return None
        return self.transform(img, torch.Generator().manual_seed(seed)), label


def collate_skipping(items):
    """Stack the samples that could be read; count the skipped ones."""
    kept = [it for it in items if it is not None]
    if not kept:
        return None, None, len(items)
    return (torch.stack([x for x, _ in kept]), torch.tensor([y for _, y in kept]),
            len(items) - len(kept))


def compute_mean(cfg, dataset) -> torch.Tensor:
    """Per-pixel mean image of the training set (3, h, w), or the per-channel mean (3, 1, 1)."""
    if cfg.INPUT.MEAN == "channel":
        return torch.tensor(cfg.INPUT.PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
    if isinstance(dataset, ArrayDataset):
        total = torch.zeros(dataset.images.shape[1:], dtype=torch.float64)
        for chunk in dataset.images.split(4096):
            total += chunk.double().sum(0)
        return (total / len(dataset)).float()
    # ImageNet: mean of center crops (shorter side TEST.RESIZE or 256, crop INPUT.CROP_SIZE) of
    # up to INPUT.MEAN_IMAGE_MAX_IMAGES training images spread over the set.
    n = min(len(dataset), cfg.INPUT.MEAN_IMAGE_MAX_IMAGES)
    idx = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
    views = TestViews(Normalizer(torch.zeros(3, 1, 1), [1.0] * 3), resize=cfg.TEST.RESIZE or 256,
                      crop=cfg.INPUT.CROP_SIZE)
    subset = torch.utils.data.Subset(_CenterViews(dataset, views), idx)
    total, count = torch.zeros(3, cfg.INPUT.CROP_SIZE, cfg.INPUT.CROP_SIZE, dtype=torch.float64), 0
    for x in DataLoader(subset, batch_size=64, num_workers=cfg.DATALOADER.NUM_WORKERS,
                        collate_fn=_readable):
        if x:
            total += torch.stack(x).double().sum(0)
            count += len(x)
    return (total / max(count, 1)).float()


def _readable(batch):
    return [v for v in batch if v is not None]


class _CenterViews(Dataset):
    def __init__(self, base, views):
        self.base, self.views = base, views

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        img, _ = self.base[i]
        return None if img is None else self.views.center(img)[0]


def build_train_transform(cfg, normalizer: Normalizer):
    if cfg.INPUT.RECIPE == "imagenet":
        return ImageNetTrainTransform(normalizer, cfg.INPUT.TRAIN_SCALE, cfg.INPUT.CROP_SIZE,
                                      cfg.INPUT.COLOR_PCA_STD, cfg.INPUT.FLIP)
    return CifarTrainTransform(normalizer, cfg.INPUT.CIFAR_PAD, cfg.INPUT.FLIP)


def build_test_views(cfg, normalizer: Normalizer) -> TestViews:
    return TestViews(normalizer, cfg.TEST.RESIZE, cfg.TEST.CROP_SIZE, cfg.TEST.SCALES,
                     cfg.TEST.MULTI_SCALE_FLIP)


# ----------------------------------------------------------------------------- schedule
class LRSchedule:
    """lr = BASE_LR * GAMMA^k, k = steps passed (step) or plateaus met (plateau), with the
    ResNet-110 warm-up (WARMUP_LR until the training error < WARMUP_UNTIL_TRAIN_ERROR)."""

    def __init__(self, solver):
        self.s = solver
        self.drops, self.best, self.bad_evals = 0, math.inf, 0
        self.warmup_done = solver.WARMUP_LR <= 0
        self.window: List[float] = []

    def lr(self, iteration: int) -> float:
        if not self.warmup_done:
            return self.s.WARMUP_LR
        if self.s.LR_SCHEDULER == "step":
            k = sum(iteration >= step for step in self.s.STEPS)
        else:
            k = self.drops
        return self.s.BASE_LR * self.s.GAMMA ** k

    def after_iteration(self, iteration: int, train_error: float) -> Optional[str]:
        if self.warmup_done:
            return None
        self.window = (self.window + [train_error])[-self.s.WARMUP_WINDOW:]
        below = (len(self.window) == self.s.WARMUP_WINDOW
                 and sum(self.window) / len(self.window) < self.s.WARMUP_UNTIL_TRAIN_ERROR)
        if below or iteration + 1 >= self.s.WARMUP_MAX_ITER:
            self.warmup_done = True
            return (f"warm-up ended after iteration {iteration + 1} (training error "
                    f"{100 * sum(self.window) / len(self.window):.1f}%): lr back to {self.s.BASE_LR}")
        return None

    def after_eval(self, val_error: float) -> Optional[str]:
        if self.s.LR_SCHEDULER != "plateau":
            return None
        if val_error < self.best - 100 * self.s.PLATEAU_THRESHOLD:
            self.best, self.bad_evals = val_error, 0
            return None
        self.bad_evals += 1
        if self.bad_evals >= self.s.PLATEAU_PATIENCE:
            self.drops, self.bad_evals = self.drops + 1, 0
            return f"validation error plateaued at {val_error:.2f}%: lr divided by {1 / self.s.GAMMA:g}"
        return None

    def state_dict(self) -> Dict:
        return {"drops": self.drops, "best": self.best, "bad_evals": self.bad_evals,
                "warmup_done": self.warmup_done, "window": list(self.window)}

    def load_state_dict(self, state: Dict) -> None:
        self.drops, self.best, self.bad_evals = state["drops"], state["best"], state["bad_evals"]
        self.warmup_done, self.window = state["warmup_done"], list(state["window"])


# ----------------------------------------------------------------------------- logging
class MetricsLog:
    """metrics.csv + metrics.json (one JSON object per line) + TensorBoard events."""

    FIELDS = ["iteration", "epoch", "lr", "train_loss", "train_err", "val_top1_err",
              "val_top5_err", "images_per_s", "time"]

    def __init__(self, output_dir: str, start_iter: int):
        self.dir = Path(output_dir)
        self.csv, self.json = self.dir / "metrics.csv", self.dir / "metrics.json"
        self._truncate_after(start_iter)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(str(self.dir / "tensorboard"), purge_step=start_iter or None)

    def _truncate_after(self, start_iter: int) -> None:
        """A resumed run rewrites what the interrupted one logged after its checkpoint."""
        rows = []
        if self.json.exists():
            for line in self.json.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash
                if row.get("iteration", 0) <= start_iter:
                    rows.append(row)
        with open(self.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        with open(self.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, self.FIELDS)
            writer.writeheader()
            writer.writerows({k: r.get(k, "") for k in self.FIELDS} for r in rows)

    def write(self, row: Dict) -> None:
        row = {k: v for k, v in row.items() if k in self.FIELDS}
        with open(self.json, "a") as f:
            f.write(json.dumps(row) + "\n")
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, self.FIELDS).writerow({k: row.get(k, "") for k in self.FIELDS})
        for key, value in row.items():
            if key not in ("iteration", "epoch", "time") and isinstance(value, (int, float)):
                self.tb.add_scalar(key, value, row["iteration"])
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


# ----------------------------------------------------------------------------- checkpoints
def list_checkpoints(output_dir: str) -> List[Path]:
    """Periodic checkpoints of a run, newest first."""
    d = Path(output_dir)
    found = [p for p in d.glob("model_*.pth") if CKPT_RE.match(p.name)] if d.is_dir() else []
    return sorted(found, key=lambda p: int(CKPT_RE.match(p.name).group(1)), reverse=True)


def newest_complete_checkpoint(output_dir: str):
    """(path, state) of the newest checkpoint that loads; truncated/corrupt ones are skipped."""
    for path in list_checkpoints(output_dir):
        try:
            state = load_checkpoint_file(path)
            if isinstance(state, dict) and {"model", "optimizer", "iteration"} <= set(state):
                return path, state
            logger.warning("skipping %s: not a training checkpoint", path)
        except CheckpointError as e:
            logger.warning("skipping unreadable checkpoint %s (%s)", path, e)
    return None, None


def _rng_state() -> Dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}


def _set_rng_state(state: Dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    random.setstate((state["python_version"], tuple(state["python"]), None))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- trainer
class ClassificationTrainer:
    """Builds data, model and optimizer from a config, then ``train()`` / ``evaluate()``."""

    def __init__(self, cfg, resume: bool = False, eval_only: bool = False):
        self.cfg, self.rank, self.world = cfg, get_rank(), get_world_size()
        self.main = self.rank == 0
        self.device = self._device()
        seed_everything(cfg.SEED)
        self.train_set, self.val_set, self.test_set = build_datasets(cfg)
        check_num_classes(cfg, self.train_set)
        self.model = build_model(cfg).to(self.device)
        if cfg.SOLVER.CHANNELS_LAST:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.SOLVER.BASE_LR,
                                         momentum=cfg.SOLVER.MOMENTUM,
                                         weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        self.schedule = LRSchedule(cfg.SOLVER)
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.SOLVER.AMP == "fp16")
        self.start_iter, self.best_val, self.meter = 0, math.inf, [0.0, 0.0, 0.0]
        self.last_checkpoint: Optional[str] = None
        self.pixel_mean: Optional[torch.Tensor] = None
        loaded = self._resume_or_load(resume, eval_only)
        if self.pixel_mean is None:
            self.pixel_mean = self._shared_mean()
        self.normalizer = Normalizer(self.pixel_mean, cfg.INPUT.PIXEL_STD)
        self.views = build_test_views(cfg, self.normalizer)
        if loaded:
            logger.info("loaded %s", loaded)

    # -- set-up
    def _device(self) -> str:
        want = self.cfg.MODEL.DEVICE or ("cuda" if torch.cuda.is_available() else "cpu")
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError("MODEL.DEVICE is cuda but no CUDA device is available; use cpu")
            return f"cuda:{get_local_rank()}" if want == "cuda" else want
        if self.cfg.SOLVER.AMP == "fp16":
            raise ValueError("SOLVER.AMP fp16 needs CUDA; use bf16 on the CPU")
        return want

    def _shared_mean(self) -> torch.Tensor:
        """Computed once (process 0), written to OUTPUT_DIR, read by the other processes."""
        path = Path(self.cfg.OUTPUT_DIR) / "pixel_mean.pth"
        if self.main:
            save_checkpoint_atomic({"pixel_mean": compute_mean(self.cfg, self.train_set)}, path)
        synchronize()
        return load_checkpoint_file(path)["pixel_mean"]

    def _resume_or_load(self, resume: bool, eval_only: bool) -> Optional[str]:
        if resume:
            path, state = newest_complete_checkpoint(self.cfg.OUTPUT_DIR)
            if path is not None:
                load_model_weights(self.model, state["model"], str(path))
                self.optimizer.load_state_dict(state["optimizer"])
                self.schedule.load_state_dict(state["schedule"])
                self.scaler.load_state_dict(state["scaler"])
                self.start_iter, self.best_val = state["iteration"], state["best_val"]
                self.meter, self.pixel_mean = list(state["meter"]), state["pixel_mean"]
                self.last_checkpoint = str(path)
                self._rng = state["rng"]
                return f"{path} (resuming at iteration {self.start_iter})"
            logger.info("--resume: no complete checkpoint in %s, starting from scratch",
                        self.cfg.OUTPUT_DIR)
        if self.cfg.MODEL.WEIGHTS:
            state = load_checkpoint_file(self.cfg.MODEL.WEIGHTS)
            weights = state.get("model", state) if isinstance(state, dict) else state
            load_model_weights(self.model, weights, self.cfg.MODEL.WEIGHTS)
            if isinstance(state, dict) and "pixel_mean" in state:
                self.pixel_mean = state["pixel_mean"]
            return self.cfg.MODEL.WEIGHTS
        if eval_only:
            raise ValueError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
        return None

    def _autocast(self):
        amp = self.cfg.SOLVER.AMP
        if not amp:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(self.device.split(":")[0], dtype=dtype)

    def _train_model(self) -> nn.Module:
        model = self.model
        if self.world > 1:
            ids = [self.device] if self.device.startswith("cuda") else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.SOLVER.COMPILE:
            model = torch.compile(model)
        return model

    # -- checkpoints
    def save(self, iteration: int) -> str:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                 "iteration": iteration, "best_val": self.best_val, "meter": list(self.meter),
                 "pixel_mean": self.pixel_mean, "rng": _rng_state(), "cfg": self.cfg.dump(),
                 "model_name": self.cfg.MODEL.NAME}
        path = Path(self.cfg.OUTPUT_DIR) / f"model_{iteration:07d}.pth"
        save_checkpoint_atomic(state, path)
        for old in list_checkpoints(self.cfg.OUTPUT_DIR)[self.cfg.SOLVER.KEEP_LAST:]:
            old.unlink()
        self.last_checkpoint = str(path)
        return str(path)

    def save_weights(self, name: str, **extra) -> str:
        """Weights only (model_best.pth, model_final.pth): what --eval-only and export read."""
        return save_checkpoint_atomic({"model": self.model.state_dict(), "pixel_mean": self.pixel_mean,
                                       "cfg": self.cfg.dump(), "model_name": self.cfg.MODEL.NAME,
                                       **extra}, Path(self.cfg.OUTPUT_DIR) / name)

    # -- evaluation
    def evaluate(self, mode: str, dataset=None) -> Dict:
        return evaluate(self.model, dataset if dataset is not None else self.val_set, self.views,
                        mode, batch_size=self.cfg.TEST.IMS_PER_BATCH,
                        num_workers=self.cfg.DATALOADER.NUM_WORKERS, device=self.device,
                        autocast=self._autocast(), channels_last=self.cfg.SOLVER.CHANNELS_LAST)

    def final_evaluation(self) -> Dict[str, Dict]:
        """TEST.FINAL_MODES on the val/test set (and on the test set when a val split is held out)."""
        results = {}
        sets = [("val", self.val_set)] + ([("test", self.test_set)] if self.test_set is not None else [])
        for split, dataset in sets:
            for mode in self.cfg.TEST.FINAL_MODES:
                results[f"{split}/{mode}"] = self.evaluate(mode, dataset)
        return results

    # -- training
    def train(self) -> Dict:
        cfg, s = self.cfg, self.cfg.SOLVER
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        if hasattr(self, "_rng"):
            _set_rng_state(self._rng)
        model = self._train_model()
        model.train()
        sampler = TrainBatchSampler(len(self.train_set), s.IMS_PER_BATCH, seed=cfg.SEED,
                                    start_iter=self.start_iter, max_iter=s.MAX_ITER,
                                    rank=self.rank, world_size=self.world)
        loader = DataLoader(AugmentedDataset(self.train_set, build_train_transform(cfg, self.normalizer)),
                            batch_sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                            collate_fn=collate_skipping, pin_memory=self.device.startswith("cuda"),
                            persistent_workers=False)
        log = MetricsLog(cfg.OUTPUT_DIR, self.start_iter) if self.main else None
        from tqdm import tqdm
        bar = tqdm(total=s.MAX_ITER, initial=self.start_iter, unit="it", dynamic_ncols=True,
                   disable=not (self.main and cfg.PROGRESS_BAR), desc="train")
        memory_format = torch.channels_last if s.CHANNELS_LAST else torch.contiguous_format
        skipped_total, t_log = 0, time.perf_counter()
        try:
            for it, (images, labels, skipped) in zip(range(self.start_iter, s.MAX_ITER), loader):
                lr = self.schedule.lr(it)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                stats = torch.zeros(4, dtype=torch.float64, device=self.device)
                stats[3] = skipped
                if images is not None:
                    images = images.to(self.device, non_blocking=True).contiguous(memory_format=memory_format)
                    labels = labels.to(self.device, non_blocking=True)
                    with self._autocast():
                        logits = model(images)
                        loss = F.cross_entropy(logits.float(), labels)
                    stats[0] = loss.detach().double() * len(labels)
                    stats[1] = (logits.detach().argmax(1) != labels).sum()
                    stats[2] = len(labels)
                else:  # every image of this process's share was skipped
                    loss = sum(p.sum() * 0 for p in self.model.parameters())
                stats = all_reduce_sum(stats).cpu()
                mean_loss = stats[0].item() / max(stats[2].item(), 1)
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(
                        f"the training loss is {mean_loss} at iteration {it + 1}; training stopped. "
                        f"The last good checkpoint is {self.last_checkpoint or 'none (none written yet)'}. "
                        "Lower SOLVER.BASE_LR (or check the data), then run again with --resume.")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                train_err = stats[1].item() / max(stats[2].item(), 1)
                skipped_total += int(stats[3].item())
                self.meter = [self.meter[0] + stats[0].item(), self.meter[1] + stats[1].item(),
                              self.meter[2] + stats[2].item()]
                done = it + 1
                message = self.schedule.after_iteration(it, train_err)
                if message and self.main:
                    bar.write(message)
                bar.update(1)
                if done % cfg.LOG_PERIOD == 0 or done == s.MAX_ITER:
                    now = time.perf_counter()
                    n = max(self.meter[2], 1)
                    row = {"iteration": done, "epoch": done / sampler.batches_per_epoch, "lr": lr,
                           "train_loss": self.meter[0] / n, "train_err": 100 * self.meter[1] / n,
                           "images_per_s": self.meter[2] / max(now - t_log, 1e-9), "time": time.time()}
                    self.meter, t_log = [0.0, 0.0, 0.0], now
                    if self.main:
                        log.write(row)
                        bar.set_postfix(loss=f"{row['train_loss']:.3f}", err=f"{row['train_err']:.1f}%",
                                        lr=f"{lr:g}", img_s=f"{row['images_per_s']:.0f}")
                if done % cfg.TEST.EVAL_PERIOD == 0 or done == s.MAX_ITER:
                    self._validate(done, log, bar)
                if done % s.CHECKPOINT_PERIOD == 0 or done == s.MAX_ITER:
                    if self.main:
                        self.save(done)
                    synchronize()
        finally:
            bar.close()
            if log is not None:
                log.close()
        if self.main:
            self.save_weights("model_final.pth")
        synchronize()
        return {"skipped_train_images": skipped_total}

    def _validate(self, done: int, log: Optional[MetricsLog], bar) -> None:
        result = self.evaluate(self.cfg.TEST.EVAL_MODE)
        message = self.schedule.after_eval(result["top1_err"])
        if self.main:
            log.write({"iteration": done, "val_top1_err": result["top1_err"],
                       "val_top5_err": result["top5_err"], "time": time.time()})
            bar.write(f"iteration {done}: val top-1 error {result['top1_err']:.2f}%, top-5 "
                      f"{result['top5_err']:.2f}% ({self.cfg.TEST.EVAL_MODE}, {result['count']} images)")
            if message:
                bar.write(message)
        if result["top1_err"] < self.best_val:
            self.best_val = result["top1_err"]
            if self.main:
                self.save_weights("model_best.pth", iteration=done, val_top1_err=result["top1_err"])
