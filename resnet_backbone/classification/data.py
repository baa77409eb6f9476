"""The datasets of a classification config (``DATASETS.*``): the built-in synthetic images, the
CIFAR-10 python batches, an ImageNet folder (readers in ``resnet_backbone.data``) or its tar
shards (``DATASETS.FORMAT shards``: ``shard_data``), with the paper's held-out validation split
of CIFAR-10; the mean the inputs are centred with, and the training augmentation and test views
the config asks for."""
import hashlib
import logging
import os
from typing import Dict

import torch
from torch.utils.data import DataLoader, Dataset

from ..distributed import (computed_once, get_rank, get_world_size, machines_that_differ,
                           on_every_process)
from ..data.datasets import ArrayDataset, ImageFolderDataset, load_cifar10
from ..data.shards import ShardError, missing_local_shards
from ..data.synthetic import make_synthetic
from .shard_data import ShardedImages, ShardMeanItems
from .transforms import CifarTrainTransform, FastImageNetTrainTransform, Normalizer, TestViews

logger = logging.getLogger("resnet_backbone.cls")


def build_datasets(cfg):
    """(train, val, test) datasets of cfg.DATASETS; ``test`` is None unless a val split is held out."""
    name, d = cfg.DATASETS.NAME, cfg.DATASETS
    if name == "synthetic":
        s = d.SYNTHETIC
        train = make_synthetic(s.NUM_TRAIN, num_classes=s.NUM_CLASSES, image_size=s.IMAGE_SIZE, seed=s.SEED)
        test = make_synthetic(s.NUM_TEST, num_classes=s.NUM_CLASSES, image_size=s.IMAGE_SIZE, seed=s.SEED + 1)
    elif name == "cifar10":
        train, test = load_cifar10(d.ROOT, train=True), load_cifar10(d.ROOT, train=False)
    elif d.FORMAT == "shards":
        return _image_shards(cfg)
    else:
        return _image_folders(cfg)
    if d.VAL_HOLDOUT:
        if not 0 < d.VAL_HOLDOUT < len(train):
            raise ValueError(f"DATASETS.VAL_HOLDOUT must be in 1..{len(train) - 1}; got {d.VAL_HOLDOUT}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.SEED))
        val = train.subset(order[-d.VAL_HOLDOUT:])
        return train.subset(order[:-d.VAL_HOLDOUT]), val, test
    return train, test, None


#: What a split's images are called in the dataset check's messages.
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


def _image_folders(cfg):
    """ImageNet's train/ and val/ (labelled with train/'s class indices), checked before the
    first step (``ImageFolderDataset.check``): an unreadable image stops the run with one line
    naming it, or, with DATALOADER.SKIP_CORRUPT, is reported on one line and skipped.

    The check runs once, in process 0 (its cache is that machine's), and its verdict (the
    unreadable files, relative to the split folder) is broadcast: every machine reads its own
    copy of DATASETS.ROOT, which must hold the same files (their relative paths are compared;
    a copy that differs is an error naming the machine)."""
    root, skip = cfg.DATASETS.ROOT, cfg.DATALOADER.SKIP_CORRUPT
    train = ImageFolderDataset(root, "train", skip)
    val = ImageFolderDataset(root, "val", skip, classes=train.classes)

    def check() -> Dict[str, Dict[str, str]]:
        verdicts = {}
        for dataset in (train, val):
            report = dataset.check()
            logger.info(report.summary())
            if report.bad:
                print(report.skip_message(SPLIT_NAMES.get(dataset.split, dataset.split)), flush=True)
            verdicts[dataset.split] = {os.path.relpath(path, dataset.root): why
                                       for path, why in dataset.unreadable.items()}
        return verdicts

    for dataset in (train, val):  # first: every machine stops together on another copy
        differ = machines_that_differ(lambda: _file_list_digest(dataset))
        if differ:
            raise ValueError(f"DATASETS.ROOT {root} on machine {', '.join(map(str, differ))} does "
                             f"not hold the same {dataset.split}/ files as on machine 0: give every "
                             "machine the same copy")
    verdicts = computed_once(check)
    if get_rank() != 0:
        for dataset in (train, val):
            dataset.unreadable = {os.path.join(dataset.root, rel): why
                                  for rel, why in verdicts[dataset.split].items()}
    return train, val, None


def _image_shards(cfg):
    """ImageNet's train and val shards (``resnet-make-shards``): their indexes, and every
    machine's copy checked before the first step: the shards its index lists exist (local ones;
    a remote shard that cannot be read stops the run when it is read, naming it), and its index
    is machine 0's. The images were checked when the shards were written; one that cannot be
    decoded stops the run naming its record and shard, or, with DATALOADER.SKIP_CORRUPT, is
    skipped and counted."""
    root, skip = cfg.DATASETS.ROOT, cfg.DATALOADER.SKIP_CORRUPT
    train = ShardedImages(root, "train", skip)
    val = ShardedImages(root, "val", skip, classes=train.classes)
    for images in (train, val):
        for machine, missing in on_every_process(lambda: missing_local_shards(images.index)):
            if missing:
                where = f" on machine {machine}" if get_world_size() > 1 else ""
                more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
                raise ShardError(f"{len(missing)} of the {len(images.index.shards)} shards that "
                                 f"{images.split}.json lists are missing{where}: "
                                 f"{', '.join(missing[:3])}{more}; copy them there, or write the "
                                 "shards again with resnet-make-shards")
        differ = machines_that_differ(images.index.digest)
        if differ:
            raise ShardError(f"the {images.split} shard index in DATASETS.ROOT {root} on machine "
                             f"{', '.join(map(str, differ))} is not machine 0's: give every "
                             "machine the same copy of the shards")
    return train, val, None


def _file_list_digest(dataset) -> str:
    """A digest of a split's files (paths relative to its folder, labels): equal on machines
    whose copies of the dataset hold the same files."""
    h = hashlib.sha256()
    for path, label in dataset.folder.samples:
        h.update(f"{os.path.relpath(path, dataset.root)}\t{label}\n".encode())
    return h.hexdigest()


def num_classes_of(dataset) -> int:
    return len(dataset.classes)


def check_num_classes(cfg, dataset) -> None:
    n = num_classes_of(dataset)
    if n != cfg.MODEL.NUM_CLASSES:
        raise ValueError(f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but the dataset "
                         f"{cfg.DATASETS.NAME} has {n} classes; set MODEL.NUM_CLASSES {n}")


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
    # up to INPUT.MEAN_IMAGE_MAX_IMAGES training images spread over the set (of shards: the first
    # ones of the index, whose order is random already).
    n = min(len(dataset), cfg.INPUT.MEAN_IMAGE_MAX_IMAGES)
    views = TestViews(Normalizer(torch.zeros(3, 1, 1), [1.0] * 3), resize=cfg.TEST.RESIZE or 256,
                      crop=cfg.INPUT.CROP_SIZE)
    if isinstance(dataset, ShardedImages):
        subset = ShardMeanItems(dataset, views, n)
    else:
        idx = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
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
    """The training augmentation of INPUT.RECIPE. ImageNet's returns uint8 pixels and each
    image's lighting shift; the trainer finishes the batch on its device (``DeviceNormalizer``)."""
    if cfg.INPUT.RECIPE == "imagenet":
        return FastImageNetTrainTransform(cfg.INPUT.TRAIN_SCALE, cfg.INPUT.CROP_SIZE,
                                          cfg.INPUT.COLOR_PCA_STD, cfg.INPUT.FLIP)
    return CifarTrainTransform(normalizer, cfg.INPUT.CIFAR_PAD, cfg.INPUT.FLIP)


def build_test_views(cfg, normalizer: Normalizer) -> TestViews:
    return TestViews(normalizer, cfg.TEST.RESIZE, cfg.TEST.CROP_SIZE, cfg.TEST.SCALES,
                     cfg.TEST.MULTI_SCALE_FLIP)
