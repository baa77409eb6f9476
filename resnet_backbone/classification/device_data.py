"""CIFAR held on the training device (``DATALOADER.ON_DEVICE True``): the whole training set as
one uint8 tensor on the device, the paper's augmentation done there on each batch by tensor
ops, no DataLoader workers: the host's only per-image work is three draws from each sample's
generator (a CPU DataLoader makes one Python call per image).

The batches are the DataLoader path's: the same sampler keys (index, seed) and the same draws
(``CifarTrainTransform.draw``), so the same crops and flips; the mean subtraction and division
are the same elementwise float operations, so on the CPU the batches are equal bit for bit
(tested), and resume stays exact. Device-agnostic: it runs wherever the model does.
"""
from typing import Iterable, Iterator, List, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..data.datasets import ArrayDataset
from .transforms import CifarTrainTransform


class DeviceCifarBatches:
    """The training batches ``(images, labels, 0)`` of ``dataset`` for the batches of sample
    keys ``sampler`` yields (the trainer's ``SeededBatchSampler``), augmented on ``device`` as
    ``transform`` (the CPU path's ``CifarTrainTransform``) does. The third item, the number of
    unreadable images skipped, is always 0 (images in memory)."""

    def __init__(self, dataset: ArrayDataset, transform: CifarTrainTransform,
                 sampler: Iterable[Sequence[Tuple[int, int]]], device: torch.device):
        self.transform, self.sampler, self.device = transform, sampler, torch.device(device)
        self.images = dataset.images.to(self.device)  # uint8 (N, 3, H, W): 150 MB for CIFAR-10
        self.labels = torch.as_tensor(dataset.labels).to(self.device)
        h, w = self.images.shape[-2:]
        self.mean = transform.normalizer.mean_at((h, w)).to(self.device)
        self.std = transform.normalizer.std.to(self.device)
        self.rows, self.cols = torch.arange(h, device=self.device), torch.arange(w, device=self.device)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor, int]]:
        for keys in self.sampler:
            yield (*self.batch(keys), 0)

    def batch(self, keys: Sequence[Tuple[int, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """The augmented images (float, normalised) and labels of the samples ``keys``."""
        draws: List[Tuple[int, int, bool]] = [
            self.transform.draw(torch.Generator().manual_seed(seed)) for _, seed in keys]
        index = torch.tensor([i for i, _ in keys], device=self.device)
        top, left, flip = (torch.tensor(column, device=self.device) for column in zip(*draws))
        x = (self.images[index].float() - self.mean) / self.std
        pad = self.transform.pad
        if pad:
            x = F.pad(x, (pad,) * 4)
        rows = top[:, None] + self.rows  # (B, h): each image's crop, in the padded image
        cols = left[:, None] + self.cols  # (B, w)
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reads the columns backwards
        n = torch.arange(len(keys), device=self.device)
        channels = torch.arange(x.shape[1], device=self.device)
        x = x[n[:, None, None, None], channels[None, :, None, None], rows[:, None, :, None],
              cols[:, None, None, :]]
        return x.contiguous(), self.labels[index]


__all__ = ["DeviceCifarBatches"]
