"""The training order of both trainers, a function of the seed alone, so that a resumed run (and
any number of processes) sees exactly the batches of an uninterrupted one.

Epoch e is a permutation of the samples drawn from a generator seeded by (seed, e). The samples
may carry a group each (detection: landscape or portrait, as detectron2's aspect-ratio grouping):
each group, in permutation order, is cut into global batches (a last partial batch is dropped),
and the batches run in the order of their first sample. Process r of W takes the r-th of W equal
parts of each global batch. Each sample comes with its augmentation seed, a function of
(seed, epoch, position in the permutation). A run resumed at iteration k starts the sampler at k:
the consumed batches are skipped, not loaded.

The classifier trainer uses one group (``SeededBatchSampler(num_samples, ...)``), the detection
trainer one group per aspect ratio; with one group the two are the same order.
"""
from collections import Counter
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..seeding import derived_seed


class SeededBatchSampler:
    """This process's share of the global batches for iterations ``start_iter .. max_iter - 1``
    (endless when ``max_iter`` is None): lists of (sample index, augmentation seed).

    ``groups``: the number of samples (all in one group), or each sample's group.
    """

    def __init__(self, groups: Union[int, Sequence[int]], global_batch: int, *, seed: int,
                 start_iter: int = 0, max_iter: Optional[int] = None, rank: int = 0,
                 world_size: int = 1):
        self.groups = [0] * groups if isinstance(groups, int) else list(groups)
        self.batch, self.seed, self.start_iter, self.max_iter = global_batch, seed, start_iter, max_iter
        self.rank, self.world = rank, world_size
        counts = Counter(self.groups)
        self.batches_per_epoch = sum(c // global_batch for c in counts.values())
        if self.batches_per_epoch == 0:
            if isinstance(groups, int):
                raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is larger than the "
                                 f"training set ({groups} images)")
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is larger than every "
                             f"aspect-ratio group of the training set ({dict(counts)} images)")

    def __len__(self) -> int:
        if self.max_iter is None:
            raise TypeError("an endless SeededBatchSampler (max_iter=None) has no length")
        return self.max_iter - self.start_iter

    def epoch_batches(self, epoch: int) -> List[List[Tuple[int, int]]]:
        """The global batches of an epoch, as lists of (position in the permutation, index)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.groups), generator=g).tolist()
        if len(set(self.groups)) == 1:  # one group: the permutation cut in order
            return [list(enumerate(order[b * self.batch:(b + 1) * self.batch], b * self.batch))
                    for b in range(self.batches_per_epoch)]
        batches = []
        for group in sorted(set(self.groups)):
            members = [(pos, i) for pos, i in enumerate(order) if self.groups[i] == group]
            for b in range(len(members) // self.batch):
                batches.append(members[b * self.batch:(b + 1) * self.batch])
        batches.sort(key=lambda members: members[0][0])  # in the order of their first sample
        return batches

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        per = self.batch // self.world
        epoch, batches, it = -1, [], self.start_iter
        while self.max_iter is None or it < self.max_iter:
            e, k = divmod(it, self.batches_per_epoch)
            if e != epoch:
                epoch, batches = e, self.epoch_batches(e)
            yield [(i, derived_seed(self.seed, epoch, pos))
                   for pos, i in batches[k][self.rank * per:(self.rank + 1) * per]]
            it += 1
