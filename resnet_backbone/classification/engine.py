"""The classification trainer: the paper's SGD recipes with exact resume.

Exact resume: a run resumed from the newest readable checkpoint continues with the data order and
augmentation (``sampler``), lr, optimizer, scheduler, warm-up, metric and RNG state of the
uninterrupted run, so its final weights are the same (tested, also after SIGKILL).

Checkpoints are fvcore's, as detectron2's (``SafeCheckpointer`` under ``PeriodicCheckpointer``):
``model_<index of the last iteration run, 7 digits>.pth`` every ``SOLVER.CHECKPOINT_PERIOD``
iterations (the newest ``SOLVER.KEEP_LAST`` kept), ``model_final.pth`` at the end, and
``last_checkpoint`` naming the newest. Each holds the weights (``model``), ``pixel_mean``, ``cfg``,
``model_name`` (what ``--eval-only`` and the backbone export read) and ``classes`` (the training
set's class names, in label order: what the predictor calls its outputs) beside the training state.
``model_best.pth`` holds the weights with the lowest validation error, and exists only when
the validation set is held out of the training data (``DATASETS.VAL_HOLDOUT``): without a
held-out split the set evaluated during training is the test set, whose error is reported
(curves, ``final_results.json`` of ``model_final.pth``) but never used to pick weights.
"""
import logging
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from fvcore.common.checkpoint import PeriodicCheckpointer
from torch import nn
from torch.utils.data import DataLoader

from ..checkpoint import CheckpointError, SafeCheckpointer, save_checkpoint_atomic
from ..distributed import (all_reduce_sum, computed_once, get_local_rank, get_rank, get_world_size,
                           synchronize, wrap_ddp)
from ..errors import NonFiniteLossError, non_finite_loss_message
from ..fast import autocast_context, speed_up_strided_1x1
from ..seeding import rng_state, seed_everything, set_rng_state
from ..stopping import RunStopped, requested, stop_requests, stopped_message
from ..models import create_model, model_spec
from .data import (build_datasets, build_test_views, build_train_transform, check_num_classes,
                   compute_mean)
from .evaluate import evaluate
from .metrics import MetricsLog
from .device_data import DeviceCifarBatches
from .device_decode import DeviceDecodedBatches, EncodedImages, collate_encoded
from .sampler import AugmentedDataset, TrainBatchSampler, collate_skipping
from .shard_data import ShardedImages, ShardTrainBatches, StreamPlan
from .schedule import (WarmUpUntilTrainError, build_lr_scheduler, step_per_evaluation,
                       step_per_iteration)
from .transforms import DeviceNormalizer, Normalizer

logger = logging.getLogger("resnet_backbone.cls")
#: A periodic checkpoint's name (fvcore's PeriodicCheckpointer writes model_final.pth beside them).
PERIODIC_CHECKPOINT = re.compile(r"^model_(\d{7})\.pth$")


def build_model(cfg) -> nn.Module:
    """``create_model(MODEL.NAME, ...)`` with the options that network takes."""
    spec = model_spec(cfg.MODEL.NAME)
    kw = {"num_classes": cfg.MODEL.NUM_CLASSES}
    if "norm" in spec.options:
        kw["norm"] = cfg.MODEL.NORM
    if "stride_in_1x1" in spec.options:
        kw["stride_in_1x1"] = cfg.MODEL.STRIDE_IN_1X1
    if cfg.MODEL.SHORTCUT:
        if "shortcut" not in spec.options:
            raise ValueError(f"MODEL.SHORTCUT applies to residual nets only; {spec.name} has none "
                             "(set MODEL.SHORTCUT \"\")")
        kw["shortcut"] = cfg.MODEL.SHORTCUT
    return create_model(spec.name, **kw)


def periodic_checkpoints(output_dir: str, before: Optional[int] = None) -> List[str]:
    """The periodic checkpoints of a run, oldest first (those of iterations before ``before``)."""
    d = Path(output_dir)
    found = [(int(m.group(1)), p) for p in (d.iterdir() if d.is_dir() else [])
             if (m := PERIODIC_CHECKPOINT.match(p.name))]
    return [str(p) for it, p in sorted(found) if before is None or it < before]


class ClassificationTrainer:
    """Builds data, model, optimizer and checkpointer from a config, then ``train()`` /
    ``evaluate()`` / ``final_evaluation()``."""

    def __init__(self, cfg, resume: bool = False, eval_only: bool = False):
        self.cfg, self.rank, self.world = cfg, get_rank(), get_world_size()
        self.main = self.rank == 0
        self.device = self._device()
        self.amp = cfg.SOLVER.AMP or "fp32"
        autocast_context(self.device, self.amp)  # a dtype this device lacks fails now
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK
        seed_everything(cfg.SEED)
        self.train_set, self.val_set, self.test_set = build_datasets(cfg)
        # a test set apart means the val set came out of the training data: it may pick weights
        self.selects_on_held_out_data = self.test_set is not None
        check_num_classes(cfg, self.train_set)
        self.model = speed_up_strided_1x1(build_model(cfg).to(self.device),
                                          channels_last=cfg.SOLVER.CHANNELS_LAST)
        if cfg.SOLVER.CHANNELS_LAST:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.SOLVER.BASE_LR,
                                         momentum=cfg.SOLVER.MOMENTUM,
                                         weight_decay=cfg.SOLVER.WEIGHT_DECAY)
        self.scheduler = build_lr_scheduler(self.optimizer, cfg.SOLVER)
        self.warmup = WarmUpUntilTrainError.from_solver(cfg.SOLVER)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.checkpointer = SafeCheckpointer(
            self.model, cfg.OUTPUT_DIR, save_to_disk=self.main, optimizer=self.optimizer,
            scheduler=self.scheduler, scaler=self.scaler, warmup=self.warmup)
        self.start_iter, self.best_val, self.meter = 0, math.inf, [0.0, 0.0, 0.0]
        self.pixel_mean: Optional[torch.Tensor] = None
        self._rng: Optional[Dict] = None
        loaded = self._resume_or_load(resume, eval_only)
        if self.pixel_mean is None:
            self.pixel_mean = self._shared_mean()
        self.normalizer = Normalizer(self.pixel_mean, cfg.INPUT.PIXEL_STD)
        self.device_normalizer = DeviceNormalizer(self.normalizer, self.device)
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
        return want

    def _shared_mean(self) -> torch.Tensor:
        """Computed once (process 0) and broadcast: no other machine reads a file for it.
        Process 0 also keeps it in OUTPUT_DIR/pixel_mean.pth (a record of its own run)."""
        def compute() -> torch.Tensor:
            mean = compute_mean(self.cfg, self.train_set)
            save_checkpoint_atomic({"pixel_mean": mean}, Path(self.cfg.OUTPUT_DIR) / "pixel_mean.pth")
            return mean
        return computed_once(compute)

    def _resume_or_load(self, resume: bool, eval_only: bool) -> Optional[str]:
        # process 0's newest checkpoint, broadcast: the other machines need no copy of OUTPUT_DIR
        point = self.checkpointer.resume_point() if resume else None
        if point is not None:
            path = point[0]
            extra = self.checkpointer.load_read(*point)  # weights and every checkpointable
            if "schedule" in extra:
                raise CheckpointError(
                    f"{path} was written by resnet_backbone 0.1, whose training state --resume "
                    "cannot continue; its weights load with MODEL.WEIGHTS (without --resume).")
            self.start_iter, self.best_val = extra["iteration"] + 1, extra["best_val"]
            self.meter, self.pixel_mean, self._rng = list(extra["meter"]), extra["pixel_mean"], extra["rng"]
            readers = extra.get("shard_readers")
            if (isinstance(self.train_set, ShardedImages) and readers is not None
                    and list(readers) != self._shard_readers()):
                logger.warning(
                    "--resume: the shards were read by %d processes x %d DataLoader workers, now "
                    "by %d x %d: the run goes on with another order of the training images than "
                    "the interrupted run's (exact only with the same numbers)",
                    *readers, *self._shard_readers())
            return f"{path} (resuming at iteration {self.start_iter})"
        if resume:
            logger.info("--resume: no complete checkpoint in %s, starting from scratch",
                        self.cfg.OUTPUT_DIR)
        if self.cfg.MODEL.WEIGHTS:
            extra = self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
            if "pixel_mean" in extra:
                self.pixel_mean = extra["pixel_mean"]
            return self.cfg.MODEL.WEIGHTS
        if eval_only:
            raise ValueError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
        if self.cfg.MODEL.NORM == "FrozenBN":
            raise ValueError("MODEL.NORM FrozenBN with random weights normalises nothing (its "
                             "statistics are fixed at 0 and 1): train from scratch with MODEL.NORM "
                             "BN (naiveSyncBN / SyncBN for several processes), or start from "
                             "pre-trained weights with MODEL.WEIGHTS")
        return None

    def _autocast(self):
        return autocast_context(self.device, self.amp)

    def _on_device(self, images) -> torch.Tensor:
        """A training batch on the device: float images as they are, or (uint8 pixels,
        lighting shifts) from the ImageNet augmentation, finished there."""
        if isinstance(images, tuple):
            pixels, shift = (t.to(self.device, non_blocking=True) for t in images)
            return self.device_normalizer(pixels, shift)
        return images.to(self.device, non_blocking=True)

    def _train_model(self) -> nn.Module:
        model = wrap_ddp(self.model)  # several processes: DDP (device ids for CUDA only)
        if self.cfg.SOLVER.COMPILE:
            model = torch.compile(model)
        return model

    # -- checkpoints
    def _checkpoint_state(self) -> Dict:
        """What a checkpoint holds besides the weights and the checkpointables."""
        return {"best_val": self.best_val, "meter": list(self.meter),
                "pixel_mean": self.pixel_mean, "rng": rng_state(), "cfg": self.cfg.dump(),
                "model_name": self.cfg.MODEL.NAME, "classes": self._class_names(),
                "shard_readers": self._shard_readers()}

    def _shard_readers(self) -> List[int]:
        """What the order of a sharded training set depends on beside the seed (``shard_data``):
        [processes, streams per process]."""
        return [self.world, max(1, self.cfg.DATALOADER.NUM_WORKERS)]

    def _class_names(self) -> List[str]:
        """The training set's class names, label order (ImageFolder folders, CIFAR names)."""
        return [str(c) for c in self.train_set.classes]

    def _save_best(self, iteration: int, val_error: float) -> str:
        """``model_best.pth``: the weights and what reading them needs (not a resume point)."""
        return save_checkpoint_atomic(
            {"model": self.model.state_dict(), "pixel_mean": self.pixel_mean,
             "cfg": self.cfg.dump(), "model_name": self.cfg.MODEL.NAME,
             "classes": self._class_names(), "iteration": iteration, "val_top1_err": val_error},
            Path(self.cfg.OUTPUT_DIR) / "model_best.pth")

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
        if self._rng is not None:
            set_rng_state(self._rng)
        model = self._train_model()
        model.train()
        loader, batches_per_epoch = self._train_batches()
        periodic = PeriodicCheckpointer(self.checkpointer, s.CHECKPOINT_PERIOD, max_iter=s.MAX_ITER,
                                        max_to_keep=s.KEEP_LAST)
        # the rotation also covers what the run wrote before a resume
        periodic.recent_checkpoints = periodic_checkpoints(cfg.OUTPUT_DIR, before=self.start_iter)
        log = MetricsLog(cfg.OUTPUT_DIR, self.start_iter) if self.main else None
        from tqdm import tqdm
        bar = tqdm(total=s.MAX_ITER, initial=self.start_iter, unit="it", dynamic_ncols=True,
                   disable=not (self.main and cfg.PROGRESS_BAR), desc="train")
        memory_format = torch.channels_last if s.CHANNELS_LAST else torch.contiguous_format
        try:
            with stop_requests():
                skipped_total = self._train_loop(model, loader, batches_per_epoch, periodic, log,
                                                 bar, memory_format)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return {"skipped_train_images": skipped_total}

    def _train_batches(self) -> Tuple[Iterable, int]:
        """The training batches of iterations start_iter .. MAX_ITER - 1, as the config reads
        and augments them, and how many make an epoch."""
        cfg, s = self.cfg, self.cfg.SOLVER
        transform = build_train_transform(cfg, self.normalizer)
        gpu, workers = cfg.DATALOADER.BACKEND == "gpu", cfg.DATALOADER.NUM_WORKERS
        pin = self.device.startswith("cuda") and not gpu
        if isinstance(self.train_set, ShardedImages):  # a stream per process and worker
            plan = StreamPlan(self.train_set, seed=cfg.SEED, global_batch=s.IMS_PER_BATCH,
                              rank=self.rank, world_size=self.world, num_workers=workers,
                              shuffle_buffer=cfg.DATALOADER.SHUFFLE_BUFFER)
            loader = ShardTrainBatches(plan, transform, start_iter=self.start_iter,
                                       max_iter=s.MAX_ITER, encoded=gpu, pin_memory=pin)
            per_epoch = plan.batches_per_epoch
        else:
            sampler = TrainBatchSampler(len(self.train_set), s.IMS_PER_BATCH, seed=cfg.SEED,
                                        start_iter=self.start_iter, max_iter=s.MAX_ITER,
                                        rank=self.rank, world_size=self.world)
            per_epoch = sampler.batches_per_epoch
            if cfg.DATALOADER.ON_DEVICE:  # the training set on the device, augmented there
                return DeviceCifarBatches(self.train_set, transform, sampler, self.device), per_epoch
            if gpu:
                loader = DataLoader(EncodedImages(self.train_set), batch_sampler=sampler,
                                    num_workers=workers, collate_fn=collate_encoded,
                                    persistent_workers=False)
            else:
                loader = DataLoader(AugmentedDataset(self.train_set, transform),
                                    batch_sampler=sampler, num_workers=workers,
                                    collate_fn=collate_skipping, pin_memory=pin,
                                    persistent_workers=False)
        if gpu:  # the workers read bytes; decoded and augmented on the device
            loader = DeviceDecodedBatches(loader, transform, self.device)
        return loader, per_epoch

    def _train_loop(self, model, loader, batches_per_epoch: int, periodic, log, bar,
                    memory_format) -> int:
        """The iterations; the number of training images skipped as unreadable. A SIGTERM or
        Ctrl-C (``stop_requests``) seen by any process ends the loop after that step, with a
        checkpoint of it (``_stop``)."""
        cfg, s = self.cfg, self.cfg.SOLVER
        skipped_total, t_log = 0, time.perf_counter()
        for it, (images, labels, skipped) in zip(range(self.start_iter, s.MAX_ITER), loader):
            stats = torch.zeros(5, dtype=torch.float64, device=self.device)
            stats[3] = skipped
            stats[4] = requested() is not None
            if images is not None:
                images = self._on_device(images).contiguous(memory_format=memory_format)
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
            with self.warmup.lr_for_step(self.optimizer) as lr:
                mean_loss = stats[0].item() / max(stats[2].item(), 1)
                if not math.isfinite(mean_loss):
                    last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else ""
                    raise NonFiniteLossError(non_finite_loss_message(
                        mean_loss, it + 1, lr, last, "SOLVER.BASE_LR too high for this model "
                        "and batch (lower it, or warm up with SOLVER.WARMUP_LR), or bad data"))
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            step_per_iteration(self.scheduler)
            train_err = stats[1].item() / max(stats[2].item(), 1)
            skipped_total += int(stats[3].item())
            self.meter = [self.meter[0] + stats[0].item(), self.meter[1] + stats[1].item(),
                          self.meter[2] + stats[2].item()]
            done = it + 1
            message = self.warmup.after_iteration(it, train_err)
            if message and self.main:
                bar.write(message)
            bar.update(1)
            if done % cfg.LOG_PERIOD == 0 or done == s.MAX_ITER:
                now = time.perf_counter()
                n = max(self.meter[2], 1)
                row = {"iteration": done, "epoch": done / batches_per_epoch, "lr": lr,
                       "train_loss": self.meter[0] / n, "train_err": 100 * self.meter[1] / n,
                       "images_per_s": self.meter[2] / max(now - t_log, 1e-9), "time": time.time()}
                self.meter, t_log = [0.0, 0.0, 0.0], now
                if self.main:
                    log.write(row)
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", err=f"{row['train_err']:.1f}%",
                                    lr=f"{lr:g}", img_s=f"{row['images_per_s']:.0f}")
            if done % cfg.TEST.EVAL_PERIOD == 0 or done == s.MAX_ITER:
                self._validate(done, log, bar)
            saved = done % s.CHECKPOINT_PERIOD == 0 or done == s.MAX_ITER
            if saved:
                if self.main:
                    periodic.step(it, **self._checkpoint_state())
                synchronize()
            if stats[4] > 0 and done < s.MAX_ITER:
                self._stop(it, saved)
        return skipped_total

    def _stop(self, it: int, saved: bool) -> None:
        """End the run after iteration ``it`` on a stop request: the checkpoint of that step
        (the periodic one's name and content, unless it was just written), then ``RunStopped``."""
        name = f"model_{it:07d}"
        if self.main and not saved:
            self.checkpointer.save(name, iteration=it, **self._checkpoint_state())
        synchronize()
        signum = requested() or signal.SIGTERM
        saved = str(Path(self.cfg.OUTPUT_DIR) / f"{name}.pth")
        raise RunStopped(stopped_message(signum, it + 1, saved), signum)

    def _validate(self, done: int, log: Optional[MetricsLog], bar) -> None:
        result = self.evaluate(self.cfg.TEST.EVAL_MODE)
        message = step_per_evaluation(self.scheduler, result["top1_err"])
        if self.main:
            log.write({"iteration": done, "val_top1_err": result["top1_err"],
                       "val_top5_err": result["top5_err"], "time": time.time()})
            bar.write(f"iteration {done}: val top-1 error {result['top1_err']:.2f}%, top-5 "
                      f"{result['top5_err']:.2f}% ({self.cfg.TEST.EVAL_MODE}, {result['count']} images)")
            if message:
                bar.write(message)
        if self.selects_on_held_out_data and result["top1_err"] < self.best_val:
            self.best_val = result["top1_err"]
            if self.main:
                self._save_best(done, result["top1_err"])
