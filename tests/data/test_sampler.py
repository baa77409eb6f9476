"""The one training sampler (``resnet_backbone.data.sampler``): a function of the seed alone."""
import itertools

import pytest

from resnet_backbone.data.sampler import SeededBatchSampler


def test_one_group_is_the_permutation_cut_in_order_and_groups_never_mix():
    plain = list(SeededBatchSampler(40, 8, seed=3, max_iter=12))
    assert plain == list(itertools.islice(SeededBatchSampler([0] * 40, 8, seed=3), 12))
    assert all(sorted(i for b in plain[e * 5:(e + 1) * 5] for i, _ in b) == list(range(40))
               for e in range(2))  # 5 batches an epoch, every sample once
    groups = [i % 3 == 0 for i in range(40)]  # 14 and 26 samples: 1 + 3 batches of 8
    grouped = list(SeededBatchSampler(groups, 8, seed=3, max_iter=8))
    assert all(len({groups[i] for i, _ in b}) == 1 for b in grouped)
    assert len({i for b in grouped[:4] for i, _ in b}) == 32


def test_ranks_split_each_global_batch_and_resume_continues_the_order():
    full = list(SeededBatchSampler(50, 8, seed=1, max_iter=14))
    shards = [list(SeededBatchSampler(50, 8, seed=1, max_iter=14, rank=r, world_size=2))
              for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == full
    assert list(SeededBatchSampler(50, 8, seed=1, start_iter=9, max_iter=14)) == full[9:]
    assert len(SeededBatchSampler(50, 8, seed=1, start_iter=9, max_iter=14)) == 5


def test_a_batch_larger_than_the_data_is_refused():
    with pytest.raises(ValueError, match=r"larger than the training set \(5 images\)"):
        SeededBatchSampler(5, 8, seed=0)
    with pytest.raises(ValueError, match="larger than every aspect-ratio group"):
        SeededBatchSampler([0, 1, 0, 1], 3, seed=0)
