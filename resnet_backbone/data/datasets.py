"""Image-classification datasets in their real formats, read without running code from them.

* ``ArrayDataset``: images held in memory as a uint8 (N, 3, H, W) tensor with labels (CIFAR-10,
  the synthetic images).
* CIFAR-10: the official python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``;
  pickled dicts with ``data`` uint8 N x 3072 and ``labels``), read with the restricted unpickler
  of ``resnet_backbone.checkpoint`` (never plain ``pickle``).
* ImageNet: ``train/`` and ``val/`` with one folder of images per class (torchvision
  ``ImageFolder``); an unreadable image names its file, or is skipped and counted.
"""
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

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
        return self.read(index, lambda im: im.convert("RGB"))

    def read(self, index: int, decode: Callable[[Image.Image], Any]) -> Tuple[Any, int]:
        """``(decode(opened image), label)``: ``decode`` gets the file opened but not yet
        decoded, so it can ask the JPEG decoder for a reduced size (``Image.draft``)."""
        path, label = self.folder.samples[index]
        try:
            with Image.open(path) as im:
                return decode(im), label
        except (OSError, ValueError, SyntaxError) as e:
            if self.skip_corrupt:
                return None, label
            raise CorruptImageError(f"cannot read image {path}: {e}. Remove or replace the file, "
                                    "or set DATALOADER.SKIP_CORRUPT True to skip such files") from e


