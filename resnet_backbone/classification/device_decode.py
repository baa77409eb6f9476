"""The paper's ImageNet augmentation with the JPEG decode on the training device
(``DATALOADER.BACKEND gpu``): the DataLoader workers only read each file's bytes; the main
process decodes the batch on the device (``torchvision.io.decode_jpeg(..., device=...)``: nvJPEG,
batched, on CUDA; torchvision's CPU decoder on a CPU device, which is how the suite runs it) and
crops, resizes and flips each image there by tensor ops (``FastImageNetTrainTransform`` on a
tensor); the lighting and the mean are ``DeviceNormalizer``'s, as on the CPU path.

The draws are the CPU path's (``paper_crop_plan`` from each sample's seed, in the same order):
the crop boxes, flips and lighting shifts are equal for the same run. The pixels are not: the
CPU path resizes with PIL's bilinear filter from a JPEG decoded at a reduced size, this one with
torchvision's antialiased resize of the whole decoded image; they agree to a few grey levels on
average (tested, with the bound and the measured value).

A file that nvJPEG refuses (a CMYK or progressive JPEG, a PNG named .JPEG, as ImageNet has a
few) is decoded alone, by torchvision's CPU decoder, and moved to the device.
"""
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from ..data.datasets import ImageFolderDataset
from .transforms import FastImageNetTrainTransform


class EncodedImages(Dataset):
    """The training set's files as bytes: for a sample key (index, seed), ``(uint8 tensor of
    the file, label, seed)``, or None for an unreadable file that is skipped."""

    def __init__(self, base: ImageFolderDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: Tuple[int, int]) -> Optional[Tuple[torch.Tensor, int, int]]:
        index, seed = key
        data, label = self.base.read_bytes(index)
        if data is None:
            return None
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), label, seed


def collate_encoded(items: Sequence[Optional[Tuple[torch.Tensor, int, int]]]
                    ) -> Tuple[List[torch.Tensor], torch.Tensor, List[int], int]:
    """(files, labels, seeds) of the samples read; the number skipped."""
    kept = [item for item in items if item is not None]
    return ([data for data, _, _ in kept], torch.tensor([label for _, label, _ in kept]),
            [seed for _, _, seed in kept], len(items) - len(kept))


def decode_on_device(files: List[torch.Tensor], device: torch.device) -> List[torch.Tensor]:
    """Each file as a uint8 RGB image (3, H, W) on ``device``: one batched ``decode_jpeg``;
    when it fails, file by file, with torchvision's CPU decoder for what ``decode_jpeg`` on the
    device refuses."""
    try:
        return list(decode_jpeg(files, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        return [_decode_one(data, device) for data in files]


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor:
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        return decode_image(data, mode=ImageReadMode.RGB).to(device)


class DeviceDecodedBatches:
    """The training batches ``((uint8 crops, lighting shifts), labels, skipped)`` of a
    DataLoader over ``EncodedImages`` (``collate_encoded``), decoded and augmented on ``device``
    as ``transform`` plans them; the trainer's ``DeviceNormalizer`` finishes them."""

    def __init__(self, loader: Iterable, transform: FastImageNetTrainTransform,
                 device: torch.device):
        self.loader, self.transform, self.device = loader, transform, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        for files, labels, seeds, skipped in self.loader:
            if not files:  # every image of this process's share was skipped
                yield None, None, skipped
                continue
            crops, shifts = zip(*(self.transform(image, torch.Generator().manual_seed(seed))
                                  for image, seed in zip(decode_on_device(files, self.device), seeds)))
            yield (torch.stack(crops), torch.stack(shifts)), labels, skipped


__all__ = ["EncodedImages", "collate_encoded", "decode_on_device", "DeviceDecodedBatches"]
