"""The training data order of the classification trainer, a function of the seed alone, so that
a resumed run (and any number of processes) sees exactly the batches of an uninterrupted one.

The order of training samples is a function of (SEED, epoch) and each sample's augmentation a
function of (SEED, epoch, position): a run resumed at iteration k starts its sampler at k (the
consumed batches are skipped, not loaded).
"""
import torch
from torch.utils.data import Dataset

from ..seeding import derived_seed


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
            yield [(int(perm[p]), derived_seed(self.seed, epoch, p)) for p in range(lo, lo + per)]


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
