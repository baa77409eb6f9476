"""The classification trainer's samples: the training order is the core's ``SeededBatchSampler``
(a function of (SEED, epoch); a run resumed at iteration k starts it at k), and each sample's
augmentation a function of its seed (``AugmentedDataset``); a batch skips unreadable images
(``collate_skipping``).
"""
import torch
from torch.utils.data import Dataset

from ..data.sampler import SeededBatchSampler


#: The classifier's name for the package's one training sampler (``SeededBatchSampler(num_samples,
#: ...)``: one group, ``max_iter`` set).
TrainBatchSampler = SeededBatchSampler


class AugmentedDataset(Dataset):
    def __init__(self, base, transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key
        g = torch.Generator().manual_seed(seed)
        if getattr(self.transform, "wants_unloaded", False) and hasattr(self.base, "read"):
            x, label = self.base.read(index, lambda im: self.transform(im, g))
            return None if x is None else (x, label)
        img, label = self.base[index]
        if img is None:  # corrupt, skipped (DATALOADER.SKIP_CORRUPT)
            return None
        return self.transform(img, g), label


def _stack(samples):
    """A batch of tensors, or of tuples of tensors (uint8 pixels, lighting shift) per part."""
    if isinstance(samples[0], tuple):
        return tuple(torch.stack(part) for part in zip(*samples))
    return torch.stack(samples)


def collate_skipping(items):
    """Stack the samples that could be read; count the skipped ones."""
    kept = [it for it in items if it is not None]
    if not kept:
        return None, None, len(items)
    return (_stack([x for x, _ in kept]), torch.tensor([y for _, y in kept]),
            len(items) - len(kept))
