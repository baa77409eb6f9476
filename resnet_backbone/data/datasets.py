"""Image-classification datasets in their real formats, read without running code from them.

* ``ArrayDataset``: images held in memory as a uint8 (N, 3, H, W) tensor with labels (CIFAR-10,
  the synthetic images).
* CIFAR-10: the official python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``;
  pickled dicts with ``data`` uint8 N x 3072 and ``labels``), read with the restricted unpickler
  of ``resnet_backbone.checkpoint`` (never plain ``pickle``).
* ImageNet: ``train/`` and ``val/`` with one folder of images per class (torchvision
  ``ImageFolder``), val / test labelled with train's class indices; a dataset check before
  training names the unreadable images or has them skipped (``image_check``), and an image
  unreadable at read time names its file, or is skipped and counted.
"""
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..checkpoint import CheckpointError, load_pickle_safely
from .image_check import ImageCheck, check_image_folder

logger = logging.getLogger(__name__)

CIFAR_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_LAYOUT = ("a CIFAR-10 python folder (cifar-10-batches-py/) holding data_batch_1 ... "
                "data_batch_5, test_batch and batches.meta (pickled dicts with 'data' uint8 "
                "N x 3072 and 'labels'), as extracted from cifar-10-python.tar.gz")
#: Bad values / class names named in a message (then "and N more").
SHOWN_VALUES = 5
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


def _read_cifar_batch(path: Path, num_classes: int = 10) -> Tuple[np.ndarray, np.ndarray]:
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
    try:
        labels = np.asarray(labels)
        values = labels.astype(np.int64)
        if labels.ndim != 1 or not np.array_equal(values, labels):
            raise ValueError
    except (TypeError, ValueError):
        raise DatasetLayoutError(f"{path}: 'labels' must be a list of integers (class indices "
                                 f"0..{num_classes - 1}); expected {CIFAR_LAYOUT}") from None
    out = (values < 0) | (values >= num_classes)
    if out.any():
        bad = np.unique(values[out])
        shown = ", ".join(str(v) for v in bad[:SHOWN_VALUES]) + (
            f" and {len(bad) - SHOWN_VALUES} more" if len(bad) > SHOWN_VALUES else "")
        raise DatasetLayoutError(
            f"{path}: {int(out.sum())} of {len(values)} labels are outside the valid range "
            f"0..{num_classes - 1} ({num_classes} classes): {shown} (first at index "
            f"{int(np.argmax(out))}). The file is damaged or not a CIFAR-10 batch; replace it "
            "with the one from cifar-10-python.tar.gz")
    return data.reshape(-1, 3, 32, 32), values


def load_cifar10(root: str, train: bool) -> ArrayDataset:
    folder = _cifar_dir(root)
    classes = [str(i) for i in range(10)]
    if (folder / "batches.meta").is_file():
        meta = load_pickle_safely(folder / "batches.meta")
        names = meta.get("label_names", meta.get(b"label_names")) if isinstance(meta, dict) else None
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    parts = [_read_cifar_batch(folder / f, len(classes))
             for f in (CIFAR_TRAIN_FILES if train else ["test_batch"])]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ArrayDataset(images, labels, classes)


class ImageFolderDataset(Dataset):
    """One split of an ImageNet-layout folder; returns (PIL RGB image or None, label).

    ``classes``: the class names of the training split, whose indices this split's labels then
    use (val / test); a class folder of this split that is not among them is an error, and a
    class without a folder here is fine (its index is simply absent). By default the class
    folders of this split are the classes (the training split).

    ``check()`` is the dataset check (``image_check``): unreadable files are an error naming
    them, or, with ``skip_corrupt``, are read as skipped without being opened. At read time an
    unreadable file raises ``CorruptImageError`` naming it, or, with ``skip_corrupt``, returns
    ``None`` for the image so the collate function drops and counts it.
    """

    def __init__(self, root: str, split: str, skip_corrupt: bool = False,
                 classes: Optional[Sequence[str]] = None):
        from torchvision.datasets import ImageFolder

        base, folder = Path(root), Path(root) / split
        if not base.is_dir():
            raise DatasetLayoutError(f"ImageNet folder {base} does not exist; expected {IMAGENET_LAYOUT}")
        if not folder.is_dir():
            raise DatasetLayoutError(f"{base} has no {split}/ folder; expected {IMAGENET_LAYOUT}")
        if classes is not None:
            _check_split_classes(folder, list(classes))
        try:  # decoded in __getitem__
            self.folder = ImageFolder(str(folder), loader=str, allow_empty=classes is not None)
        except (FileNotFoundError, RuntimeError) as e:
            raise DatasetLayoutError(f"{folder} has no class folders with images ({e}); "
                                     f"expected {IMAGENET_LAYOUT}") from e
        if classes is not None:  # this split's labels: the training class indices
            index = {c: i for i, c in enumerate(classes)}
            own = self.folder.classes
            self.folder.samples = [(path, index[own[t]]) for path, t in self.folder.samples]
            self.folder.imgs, self.folder.classes = self.folder.samples, list(classes)
            self.folder.class_to_idx = index
            self.folder.targets = [t for _, t in self.folder.samples]
        if not self.folder.samples:
            raise DatasetLayoutError(f"{folder} has no images in class folders named as the "
                                     f"training classes; expected {IMAGENET_LAYOUT}")
        self.root, self.split = str(folder), split
        self.classes, self.skip_corrupt = self.folder.classes, skip_corrupt
        self.labels = torch.tensor(self.folder.targets)
        self.unreadable: Dict[str, str] = {}  # path: why, found by check() with skip_corrupt

    def check(self, use_cache: bool = True) -> ImageCheck:
        """The dataset check of every image of this split: raises ``CorruptImageError`` naming
        the unreadable files, or, with ``skip_corrupt``, has them read as skipped images (``None``,
        dropped and counted by the collate function; see ``ImageCheck.skip_message``). Returns
        what it found."""
        report = check_image_folder(self.root, [p for p, _ in self.folder.samples], use_cache)
        if report.bad and not self.skip_corrupt:
            raise CorruptImageError(report.error_message())
        if len(report.bad) == len(self):
            raise CorruptImageError(f"none of the {report.total} images in {self.root} can be "
                                    f"read: {report.names()}")
        # kept in the samples (the indices, and so the training order, do not depend on which
        # files are readable), read as skipped without being opened
        self.unreadable = dict(report.bad)
        return report

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> Tuple[Optional[Image.Image], int]:
        return self.read(index, lambda im: im.convert("RGB"))

    def read(self, index: int, decode: Callable[[Image.Image], Any]) -> Tuple[Any, int]:
        """``(decode(opened image), label)``: ``decode`` gets the file opened but not yet
        decoded, so it can ask the JPEG decoder for a reduced size (``Image.draft``)."""
        def opened(path: str) -> Any:
            with Image.open(path) as im:
                return decode(im)
        return self._read(index, opened)

    def read_bytes(self, index: int) -> Tuple[Optional[bytes], int]:
        """``(the file's bytes, label)``, not decoded (a decoder on the training device reads
        them)."""
        return self._read(index, lambda path: Path(path).read_bytes())

    def _read(self, index: int, load: Callable[[str], Any]) -> Tuple[Any, int]:
        """``(load(path), label)`` of a sample; ``(None, label)`` for a file the check found
        unreadable, or that cannot be read with DATALOADER.SKIP_CORRUPT (skipped); else a
        ``CorruptImageError`` naming it."""
        path, label = self.folder.samples[index]
        if path in self.unreadable:
            return None, label
        try:
            return load(path), label
        except (OSError, ValueError, SyntaxError) as e:
            if self.skip_corrupt:
                return None, label
            raise CorruptImageError(f"cannot read image {path}: {e}. Remove or replace the file, "
                                    "or set DATALOADER.SKIP_CORRUPT True to skip such files") from e


def _check_split_classes(folder: Path, classes: List[str]) -> None:
    """The class folders of a val / test split must be training classes."""
    present = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    known = set(classes)
    extra = [c for c in present if c not in known]
    train = folder.parent / "train"
    if extra:
        shown = ", ".join(extra[:SHOWN_VALUES]) + (
            f" and {len(extra) - SHOWN_VALUES} more" if len(extra) > SHOWN_VALUES else "")
        raise DatasetLayoutError(
            f"{folder} has {len(extra)} class folder(s) that {train} lacks: {shown}. The model "
            f"learns the {len(classes)} classes of {train}, so these images have no label it can "
            f"predict; remove those folders from {folder} (or rename them to the training class "
            "they hold)")
    have = set(present)
    missing = [c for c in classes if c not in have]
    if missing:  # a partial val split is legitimate (a subset evaluated); said once, not an error
        more = f" and {len(missing) - SHOWN_VALUES} more" if len(missing) > SHOWN_VALUES else ""
        logger.info("%s has no folder for %d of the %d classes of %s (%s%s); its labels use the "
                    "training class indices", folder, len(missing), len(classes), train,
                    ", ".join(missing[:SHOWN_VALUES]), more)
