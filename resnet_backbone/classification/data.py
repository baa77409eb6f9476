"""Classification datasets in their real formats, and the built-in synthetic one.

* CIFAR-10: the official python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``;
  pickled dicts with ``data`` uint8 N x 3072 and ``labels``), read with the restricted unpickler
  of ``resnet_backbone.checkpoint`` (never plain ``pickle``).
* ImageNet: ``train/`` and ``val/`` with one folder of images per class (torchvision
  ``ImageFolder``); an unreadable image names its file, or is skipped and counted.
* Synthetic: deterministic, learnable 32x32 images (class colour + class stripe orientation +
  noise) for the embedded demo and the tests.
"""
import math
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..checkpoint import CheckpointError, load_pickle_safely

CIFAR_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_LAYOUT = ("a CIFAR-10 python folder (cifar-10-batches-py/) holding data_batch_1 ... "
                "data_batch_5, test_batch and batches.meta (pickled dicts with 'data' uint8 "
                "N x 3072 and 'labels'), as extracted from cifar-10-python.tar.gz")
IMAGENET_LAYOUT = ("an ImageNet folder holding train/ and val/, each with one sub-folder per "
                   "class (e.g. train/n01440764/*.JPEG, val/n01440764/*.JPEG)")


class DatasetLayoutError(ValueError):
    """A dataset folder is missing or not laid out as expected."""


class CorruptImageError(RuntimeError):
    """An image file cannot be decoded."""


class ArrayDataset(Dataset):
    """Images held in memory as a uint8 (N, 3, H, W) tensor with int labels (CIFAR, synthetic)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: List[str]):
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: torch.Tensor) -> "ArrayDataset":
        return ArrayDataset(self.images[indices], self.labels[indices], self.classes)


def _cifar_dir(root: str) -> Path:
    root = Path(root)
    for candidate in (root, root / "cifar-10-batches-py"):
        if all((candidate / f).is_file() for f in CIFAR_TRAIN_FILES + ["test_batch"]):
            return candidate
    if not root.exists():
        raise DatasetLayoutError(f"CIFAR-10 folder {root} does not exist; expected {CIFAR_LAYOUT}")
    missing = [f for f in CIFAR_TRAIN_FILES + ["test_batch"] if not (root / f).is_file()]
    raise DatasetLayoutError(f"{root} is not a CIFAR-10 folder (missing {', '.join(missing)}); "
                             f"expected {CIFAR_LAYOUT}")


def _read_cifar_batch(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        batch = load_pickle_safely(path)
    except CheckpointError as e:
        raise DatasetLayoutError(f"cannot read CIFAR-10 batch {path}: {e}") from e
    # Official files are Python 2 pickles (str keys once decoded); Python 3 writers use bytes.
    get = lambda key: batch.get(key, batch.get(key.encode())) if isinstance(batch, dict) else None
    data, labels = get("data"), get("labels")
    if data is None or labels is None:
        raise DatasetLayoutError(f"{path} has no 'data'/'labels' entries; expected {CIFAR_LAYOUT}")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DatasetLayoutError(f"{path}: 'data' must be uint8 N x 3072 with N labels; got "
                                 f"{data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def load_cifar10(root: str, train: bool) -> ArrayDataset:
    folder = _cifar_dir(root)
    parts = [_read_cifar_batch(folder / f) for f in (CIFAR_TRAIN_FILES if train else ["test_batch"])]
    classes = [str(i) for i in range(10)]
    if (folder / "batches.meta").is_file():
        meta = load_pickle_safely(folder / "batches.meta")
        names = meta.get("label_names", meta.get(b"label_names")) if isinstance(meta, dict) else None
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ArrayDataset(images, labels, classes)


def make_synthetic(num_images: int, *, num_classes: int = 10, image_size: int = 32,
                   seed: int = 0) -> ArrayDataset:
    """Class c: a colour (hue c / K) and stripes at angle c*pi/K, randomly shifted, with noise.

    Deterministic for a given seed, learnable by a small CNN in a few hundred iterations, and
    hard enough that an untrained network is at chance.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (num_images,), generator=g)
    ys, xs = torch.meshgrid(torch.arange(image_size, dtype=torch.float32),
                            torch.arange(image_size, dtype=torch.float32), indexing="ij")
    hue = labels.float() / num_classes * 2 * math.pi
    colour = torch.stack([torch.cos(hue + k * 2 * math.pi / 3) for k in range(3)], 1)  # (N, 3)
    angle = labels.float() / num_classes * math.pi
    phase = torch.rand(num_images, generator=g) * 2 * math.pi
    wave = torch.sin((xs * torch.cos(angle)[:, None, None] + ys * torch.sin(angle)[:, None, None])
                     * (2 * math.pi / 6) + phase[:, None, None])  # (N, H, W), period 6 px
    images = 128 + 40 * colour[:, :, None, None] + 50 * wave[:, None] * colour.abs()[:, :, None, None]
    images = images + 45 * torch.randn(images.shape, generator=g)
    images = images.round().clamp(0, 255).to(torch.uint8)
    return ArrayDataset(images, labels, [f"class{i}" for i in range(num_classes)])


class ImageFolderDataset(Dataset):
    """One split of an ImageNet-layout folder; returns (PIL RGB image or None, label).

    An unreadable file raises ``CorruptImageError`` naming it, or, with ``skip_corrupt``,
    returns ``None`` for the image so the collate function drops and counts it.
    """

    def __init__(self, root: str, split: str, skip_corrupt: bool = False):
        from torchvision.datasets import ImageFolder

        base, folder = Path(root), Path(root) / split
        if not base.is_dir():
            raise DatasetLayoutError(f"ImageNet folder {base} does not exist; expected {IMAGENET_LAYOUT}")
        if not folder.is_dir():
            raise DatasetLayoutError(f"{base} has no {split}/ folder; expected {IMAGENET_LAYOUT}")
        try:
            self.folder = ImageFolder(str(folder), loader=str)  # decoded in __getitem__
        except (FileNotFoundError, RuntimeError) as e:
            raise DatasetLayoutError(f"{folder} has no class folders with images ({e}); "
                                     f"expected {IMAGENET_LAYOUT}") from e
        self.classes, self.skip_corrupt = self.folder.classes, skip_corrupt
        self.labels = torch.tensor(self.folder.targets)

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> Tuple[Optional[Image.Image], int]:
        path, label = self.folder.samples[index]
        try:
            with Image.open(path) as im:
                return im.convert("RGB"), label
        except (OSError, ValueError, SyntaxError) as e:
            if self.skip_corrupt:
                return None, label
            raise CorruptImageError(f"cannot read image {path}: {e}. Remove or replace the file, "
                                    "or set DATALOADER.SKIP_CORRUPT True to skip such files") from e


def build_datasets(cfg):
    """(train, val, test) datasets of cfg.DATASETS; ``test`` is None unless a val split is held out."""
    name, d = cfg.DATASETS.NAME, cfg.DATASETS
    if name == "synthetic":
        s = d.SYNTHETIC
        train = make_synthetic(s.NUM_TRAIN, num_classes=s.NUM_CLASSES, image_size=s.IMAGE_SIZE, seed=s.SEED)
        test = make_synthetic(s.NUM_TEST, num_classes=s.NUM_CLASSES, image_size=s.IMAGE_SIZE, seed=s.SEED + 1)
    elif name == "cifar10":
        train, test = load_cifar10(d.ROOT, train=True), load_cifar10(d.ROOT, train=False)
    else:
        skip = cfg.DATALOADER.SKIP_CORRUPT
        return ImageFolderDataset(d.ROOT, "train", skip), ImageFolderDataset(d.ROOT, "val", skip), None
    if d.VAL_HOLDOUT:
        if not 0 < d.VAL_HOLDOUT < len(train):
            raise ValueError(f"DATASETS.VAL_HOLDOUT must be in 1..{len(train) - 1}; got {d.VAL_HOLDOUT}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.SEED))
        val = train.subset(order[-d.VAL_HOLDOUT:])
        return train.subset(order[:-d.VAL_HOLDOUT]), val, test
    return train, test, None


def num_classes_of(dataset) -> int:
    return len(dataset.classes)


def check_num_classes(cfg, dataset) -> None:
    n = num_classes_of(dataset)
    if n != cfg.MODEL.NUM_CLASSES:
        raise ValueError(f"MODEL.NUM_CLASSES is {cfg.MODEL.NUM_CLASSES} but the dataset "
                         f"{cfg.DATASETS.NAME} has {n} classes; set MODEL.NUM_CLASSES {n}")


def write_cifar10_batches(folder, train: ArrayDataset, test: ArrayDataset) -> Path:
    """Write datasets as the official CIFAR-10 python batches (5 training batches, test_batch,
    batches.meta), e.g. a small synthetic CIFAR-10 for tests and demos."""
    import pickle

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = torch.arange(len(train)).chunk(5)
    parts = [(f, train.subset(idx)) for f, idx in zip(CIFAR_TRAIN_FILES, chunks)] + [("test_batch", test)]
    for name, part in parts:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in part.labels],
                 b"data": part.images.reshape(len(part), 3072).numpy(),
                 b"filenames": [f"{i}.png".encode() for i in range(len(part))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in train.classes],
                     b"num_cases_per_batch": len(chunks[0]), b"num_vis": 3072}, f, protocol=2)
    return folder


def write_image_folder(root, split: str, dataset: ArrayDataset, size=None, first_index: int = 0) -> Path:
    """Write a dataset as JPEGs in ImageNet's class-folder layout (root/split/class/i.JPEG),
    optionally resized to ``size`` = (width, height); files are numbered from ``first_index``."""
    root = Path(root) / split
    for i, (img, label) in enumerate(dataset):
        folder = root / dataset.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img.permute(1, 2, 0).numpy())
        (im.resize(size, Image.BILINEAR) if size else im).save(folder / f"{split}_{first_index + i:05d}.JPEG", quality=90)
    return root
