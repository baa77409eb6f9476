"""ImageNet from tar shards (``resnet_backbone.classification.shard_data``): the epoch's records
split over processes and DataLoader workers (each read once when the shards are equal), the
workers' batches in order, the folder path's augmentation for the same image and seed, an exact
resume (also in the trainer, across an epoch boundary, with two workers), and evaluation and the
mean image read from shards as from the folder."""
from itertools import islice

import pytest
import torch
from torch.utils.data import DataLoader

from resnet_backbone.classification.data import compute_mean
from resnet_backbone.classification.engine import ClassificationTrainer
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.sampler import AugmentedDataset
from resnet_backbone.classification.shard_data import (ShardedImages, ShardEpoch, ShardTrainBatches,
                                                       StreamPlan, _as_made)
from resnet_backbone.classification.transforms import (FastImageNetTrainTransform, Normalizer,
                                                       TestViews)
from resnet_backbone.data.datasets import ImageFolderDataset
from resnet_backbone.data.shards import image_folder_records, read_records, write_shards
from resnet_backbone.models import create_model

from helpers import assert_same_state, cls_cfg_with, write_synthetic_imagenet

TRANSFORM = FastImageNetTrainTransform((36, 48), 32)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """24 training images in 8 shards of 3, 6 validation images in 2 shards; (folder, shards)."""
    root = write_synthetic_imagenet(tmp_path_factory.mktemp("imagenet"), 24, 6, (60, 48), (52, 40))
    out = root.parent / "shards"
    train = ImageFolderDataset(str(root), "train")
    val = ImageFolderDataset(str(root), "val", classes=train.classes)
    for dataset in (train, val):
        write_shards(image_folder_records(dataset, 0), str(out), dataset.split, train.classes, 3)
    return root, str(out)


def _plan(shards, world=1, rank=0, workers=2, batch=4):
    return StreamPlan(ShardedImages(shards, "train"), seed=5, global_batch=batch, rank=rank,
                      world_size=world, num_workers=workers, shuffle_buffer=4)


def _assert_same_batches(a, b):
    assert len(a) == len(b)
    for (x, y, skipped), (x2, y2, skipped2) in zip(a, b):
        assert torch.equal(x[0], x2[0]) and torch.equal(x[1], x2[1])
        assert torch.equal(y, y2) and skipped == skipped2


def test_an_epoch_reads_each_record_once_over_processes_and_workers(imagenet):
    _, shards = imagenet
    seen = []
    for rank in (0, 1):
        plan = _plan(shards, world=2, rank=rank)  # 4 readers, 2 shards each; batch 2 per process
        assert plan.batches_per_epoch == 6
        for stream in (0, 1):
            quota = len(range(stream, 6, 2)) * plan.per_process
            records = plan.reader_records(0, rank * 2 + stream)
            seen += [r["__key__"] for r in islice(records, quota)]
    assert len(seen) == len(set(seen)) == 24
    other_epoch = [r["__key__"] for r in islice(_plan(shards, world=2).reader_records(1, 0), 6)]
    assert other_epoch != seen[:6]  # another permutation of shards and records


def test_workers_give_the_batches_in_order_and_resume_is_exact(imagenet):
    _, shards = imagenet
    plan = _plan(shards)  # one process, 2 workers: 6 batches of 4 per epoch
    epoch = ShardEpoch(plan, TRANSFORM, epoch=0)
    streams = [list(epoch.stream_batches(0)), list(epoch.stream_batches(1))]
    in_turn = [streams[k % 2][k // 2] for k in range(6)]
    _assert_same_batches(list(DataLoader(epoch, batch_size=None, collate_fn=_as_made,
                                         num_workers=2)), in_turn)
    full = list(ShardTrainBatches(plan, TRANSFORM, start_iter=0, max_iter=10))
    _assert_same_batches(full[:6], in_turn)
    _assert_same_batches(list(ShardTrainBatches(plan, TRANSFORM, start_iter=3, max_iter=10)), full[3:])
    # the order is another one with another number of workers (the resume warns of it)
    one = list(ShardTrainBatches(_plan(shards, workers=0), TRANSFORM, start_iter=0, max_iter=6))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(one, full))


def test_device_decode_reads_the_same_draws_from_shards(imagenet):
    """DATALOADER.BACKEND gpu on shards (device "cpu" here): the workers hand the records'
    bytes; crops, flips and lighting are the CPU path's draws, pixels equal up to resampling
    (bound 10 grey levels on average, as the folder's device decode test)."""
    from resnet_backbone.classification.device_decode import DeviceDecodedBatches

    _, shards = imagenet
    plan = _plan(shards)
    cpu = list(ShardTrainBatches(plan, TRANSFORM, start_iter=2, max_iter=8))
    device = list(DeviceDecodedBatches(ShardTrainBatches(plan, TRANSFORM, start_iter=2, max_iter=8,
                                                         encoded=True), TRANSFORM, "cpu"))
    assert len(device) == len(cpu) == 6
    for ((pixels, shift), labels, _), ((pixels2, shift2), labels2, _) in zip(cpu, device):
        assert torch.equal(labels, labels2) and torch.equal(shift, shift2)
        assert (pixels.float() - pixels2.float()).abs().mean() < 10


def test_augmentation_is_the_folder_paths(imagenet):
    """The same transform on the same bytes with the same seed, and the seeds of the same
    positions in the epoch's global batches (process 1 of 2 here)."""
    from resnet_backbone.data.sampler import SeededBatchSampler

    root, shards = imagenet
    plan = _plan(shards, world=2, rank=1, batch=8)
    sampler = SeededBatchSampler(24, 8, seed=5, rank=1, world_size=2, max_iter=5)
    for k, batch in enumerate(sampler):
        epoch, position = divmod(k, sampler.batches_per_epoch)
        assert plan.seeds(epoch, position, 4) == [seed for _, seed in batch]
    folder = ImageFolderDataset(str(root), "train")
    index = {path[len(folder.root) + 1:].rsplit(".", 1)[0]: i
             for i, (path, _) in enumerate(folder.folder.samples)}
    epoch = ShardEpoch(_plan(shards), TRANSFORM, epoch=0)
    for seed, record in enumerate(islice(read_records(epoch.plan.images.index.urls()), 8)):
        (pixels, shift), label = epoch._augmented(record, seed)
        (pixels2, shift2), label2 = AugmentedDataset(folder, TRANSFORM)[(index[record["__key__"]], seed)]
        assert torch.equal(pixels, pixels2) and torch.equal(shift, shift2) and label == label2


def test_evaluation_and_mean_image_read_from_shards(imagenet):
    root, shards = imagenet
    torch.manual_seed(0)
    model = create_model("cifar_resnet20", num_classes=3).eval()
    views = TestViews(Normalizer(torch.full((3, 1, 1), 100.0), [60.0] * 3), 36, 32)
    train = ImageFolderDataset(str(root), "train")
    folder = evaluate(model, ImageFolderDataset(str(root), "val", classes=train.classes), views,
                      return_scores=True)
    sharded = evaluate(model, ShardedImages(shards, "val", classes=train.classes), views,
                       num_workers=2, return_scores=True)
    assert sharded["count"] == folder["count"] == 6 and sharded["top1_err"] == folder["top1_err"]
    assert torch.allclose(sharded["scores"].sum(0), folder["scores"].sum(0), atol=1e-5)
    assert sorted(sharded["indices"]) == list(range(6))
    cfg = cls_cfg_with(root.parent / "out", "DATASETS.NAME", "imagenet", "DATASETS.FORMAT", "shards",
                       "DATASETS.ROOT", shards, "INPUT.MEAN_IMAGE_MAX_IMAGES", 7, "TEST.RESIZE", 36,
                       "INPUT.CROP_SIZE", 32, "DATALOADER.NUM_WORKERS", 2)
    first = list(islice(read_records(ShardedImages(shards, "train").index.urls()), 7))
    zero = TestViews(Normalizer(torch.zeros(3, 1, 1), [1.0] * 3), 36, 32)
    expected = torch.stack([ShardedImages(shards, "train").decoded(
        r, lambda im: zero.center(im.convert("RGB"))[0])[0] for r in first]).double().mean(0)
    assert torch.allclose(compute_mean(cfg, ShardedImages(shards, "train")), expected.float())


def test_trainer_resumes_a_sharded_run_exactly(imagenet, tmp_path):
    """Stopped after 3 of the 6 iterations of an epoch (the next batch is the second worker's),
    resumed to 9: the uninterrupted run's weights."""
    _, shards = imagenet
    opts = ("DATASETS.NAME", "imagenet", "DATASETS.FORMAT", "shards", "DATASETS.ROOT", shards,
            "MODEL.NUM_CLASSES", 3, "INPUT.RECIPE", "imagenet", "INPUT.TRAIN_SCALE", [36, 48],
            "INPUT.CROP_SIZE", 32, "TEST.RESIZE", 36, "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 4,
            "TEST.EVAL_PERIOD", 100, "DATALOADER.NUM_WORKERS", 2, "DATALOADER.SHUFFLE_BUFFER", 4)
    full = ClassificationTrainer(cls_cfg_with(tmp_path / "full", "SOLVER.MAX_ITER", 9, *opts))
    full.train()
    ClassificationTrainer(cls_cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 3, *opts)).train()
    resumed = ClassificationTrainer(cls_cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 9, *opts),
                                    resume=True)
    assert resumed.start_iter == 3
    resumed.train()
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
