"""The classifier's training order (``resnet_backbone.classification.sampler.TrainBatchSampler``,
the core's ``SeededBatchSampler`` with one group): a function of the seed and the epoch, sharded
by rank, resumed exactly."""
from resnet_backbone.classification.sampler import TrainBatchSampler


def test_sampler_order_is_a_function_of_seed_and_epoch_and_shards_the_global_batch():
    full = list(TrainBatchSampler(50, 8, seed=1, start_iter=0, max_iter=14))
    assert len(full) == 14  # 6 batches per epoch: iterations 6..11 are epoch 1
    assert sorted(i for b in full[:6] for i, _ in b) != list(range(48))  # shuffled
    assert len({i for b in full[:6] for i, _ in b}) == 48  # no repeats within an epoch
    assert [i for i, _ in full[0]] != [i for i, _ in full[6]]  # new order each epoch
    resumed = list(TrainBatchSampler(50, 8, seed=1, start_iter=9, max_iter=14))
    assert resumed == full[9:]
    shards = [list(TrainBatchSampler(50, 8, seed=1, start_iter=0, max_iter=14, rank=r, world_size=2))
              for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == full
    assert list(TrainBatchSampler(50, 8, seed=2, start_iter=0, max_iter=1)) != full[:1]

