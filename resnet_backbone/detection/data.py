"""The detection training data, resumable exactly: batch k of a run is a function of (seed, k)
alone, so a run resumed at iteration k sees the batches, in the order and with the augmentation,
that the uninterrupted run saw.

detectron2's loader draws an endless stream (``TrainingSampler``), groups it by aspect ratio in
buckets that fill as samples arrive, and augments with the workers' global RNGs; after a resume
it starts that stream again from the beginning. Here instead:

* epoch e is a permutation of the images seeded by (seed, e); its images are grouped by aspect
  ratio (landscape or portrait, as detectron2's grouping) keeping their order, each group is cut
  into global batches, and the batches run in the order of their first image;
* process r of W takes the r-th of W equal parts of each global batch, so any number of
  processes sees the same global batches;
* each sample is mapped (detectron2's ``DatasetMapper``: resize, flip) with numpy and Python
  RNGs seeded by (seed, epoch, position), in a worker or in the main process alike.
"""
import random
from collections import Counter
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..distributed import get_rank, get_world_size
from ..seeding import derived_seed


class GroupedBatchSampler:
    """This process's share of the global batches, from iteration ``start_iter`` on (endless):
    lists of (record index, augmentation seed)."""

    def __init__(self, aspect_groups: Sequence[int], global_batch: int, *, seed: int,
                 start_iter: int = 0, rank: int = 0, world_size: int = 1):
        self.groups = list(aspect_groups)
        self.batch, self.seed, self.start_iter = global_batch, seed, start_iter
        self.rank, self.world = rank, world_size
        counts = Counter(self.groups)
        self.batches_per_epoch = sum(c // global_batch for c in counts.values())
        if self.batches_per_epoch == 0:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is larger than every "
                             f"aspect-ratio group of the training set ({dict(counts)} images)")

    def epoch_batches(self, epoch: int) -> List[List[Tuple[int, int]]]:
        """The global batches of an epoch, as (index, seed) lists."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.groups), generator=g).tolist()
        batches = []
        for group in sorted(set(self.groups)):
            members = [(pos, i) for pos, i in enumerate(order) if self.groups[i] == group]
            for b in range(len(members) // self.batch):
                batches.append(members[b * self.batch:(b + 1) * self.batch])
        batches.sort(key=lambda members: members[0][0])  # in the order of their first image
        return [[(i, derived_seed(self.seed, epoch, pos)) for pos, i in members]
                for members in batches]

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        per = self.batch // self.world
        epoch, cache, it = -1, [], self.start_iter
        while True:
            e, k = divmod(it, self.batches_per_epoch)
            if e != epoch:
                epoch, cache = e, self.epoch_batches(e)
            yield cache[k][self.rank * per:(self.rank + 1) * per]
            it += 1


class SeededMapping(Dataset):
    """``mapper(records[index])`` with numpy's and Python's global RNGs seeded by the sample's
    seed (detectron2's augmentations draw from them), restored afterwards."""

    def __init__(self, records: Sequence[Dict], mapper):
        self.records, self.mapper = records, mapper

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: Tuple[int, int]) -> Dict:
        index, seed = key
        np_state, py_state = np.random.get_state(), random.getstate()
        np.random.seed(seed % 2 ** 32)
        random.seed(seed)
        try:
            return self.mapper(self.records[index])
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class ResumableTrainLoader:
    """An iterable of batches (lists of mapped samples) that starts at ``start_iter``, set by
    the trainer when it resumes: the DataLoader is made at the first batch, not before."""

    def __init__(self, records: Sequence[Dict], mapper, *, global_batch: int, seed: int,
                 aspect_ratio_grouping: bool = True, num_workers: int = 0):
        if global_batch % get_world_size():
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) must be a multiple of the "
                             f"number of processes ({get_world_size()})")
        self.dataset = SeededMapping(records, mapper)
        self.groups = [int(r["width"] < r["height"]) if aspect_ratio_grouping else 0 for r in records]
        self.global_batch, self.seed, self.num_workers = global_batch, seed, num_workers
        self.start_iter = 0

    def __iter__(self) -> Iterator[List[Dict]]:
        sampler = GroupedBatchSampler(self.groups, self.global_batch, seed=self.seed,
                                      start_iter=self.start_iter, rank=get_rank(),
                                      world_size=get_world_size())
        # its own generator, so that starting the workers draws nothing from the global RNG
        loader = DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.num_workers,
                            collate_fn=list, generator=torch.Generator().manual_seed(self.seed))
        yield from loader
