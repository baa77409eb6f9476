"""The detection training data, resumable exactly: batch k of a run is a function of (seed, k)
alone, so a run resumed at iteration k sees the batches, in the order and with the augmentation,
that the uninterrupted run saw.

detectron2's loader draws an endless stream (``TrainingSampler``), groups it by aspect ratio in
buckets that fill as samples arrive, and augments with the workers' global RNGs; after a resume
it starts that stream again from the beginning. Here instead:

* the order is the core's ``SeededBatchSampler`` (``resnet_backbone.data.sampler``), one group
  per aspect ratio (landscape or portrait, as detectron2's grouping): epoch e is a permutation
  seeded by (seed, e), each group cut into global batches, process r of W taking the r-th of W
  equal parts of each;
* each sample is mapped (detectron2's ``DatasetMapper``: resize, flip) with numpy and Python
  RNGs seeded by (seed, epoch, position), in a worker or in the main process alike.
"""
import random
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.sampler import SeededBatchSampler
from ..distributed import get_rank, get_world_size


#: The detection name for the package's one training sampler, with one group per aspect ratio.
GroupedBatchSampler = SeededBatchSampler


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
