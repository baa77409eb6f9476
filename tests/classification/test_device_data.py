"""CIFAR held on the device (``classification.device_data``, ``DATALOADER.ON_DEVICE True``): the
same batches as the DataLoader path, bit for bit, on the CPU (the device here); the same
training; refused for an image folder."""
import pytest
import torch
from torch.utils.data import DataLoader

from resnet_backbone.classification.config import check_cls_cfg
from resnet_backbone.classification.data import build_train_transform
from resnet_backbone.classification.device_data import DeviceCifarBatches
from resnet_backbone.classification.engine import ClassificationTrainer
from resnet_backbone.classification.sampler import AugmentedDataset, TrainBatchSampler, collate_skipping

from helpers import assert_same_state, cls_cfg_with as cfg_with


def test_device_batches_equal_the_dataloader_batches(tmp_path):
    trainer = ClassificationTrainer(cfg_with(tmp_path, "SOLVER.MAX_ITER", 6))
    assert trainer.normalizer.mean.shape == (3, 32, 32)  # the paper's per-pixel mean
    transform = build_train_transform(trainer.cfg, trainer.normalizer)

    def sampler():
        return TrainBatchSampler(len(trainer.train_set), 16, seed=3, start_iter=0, max_iter=6)

    on_cpu = DataLoader(AugmentedDataset(trainer.train_set, transform), batch_sampler=sampler(),
                        collate_fn=collate_skipping)
    on_device = DeviceCifarBatches(trainer.train_set, transform, sampler(), "cpu")
    draws = set()
    for keys, (x, y, skipped), (dx, dy, dskipped) in zip(sampler(), on_cpu, on_device):
        assert torch.equal(x, dx) and torch.equal(y, dy) and skipped == dskipped == 0
        draws |= {transform.draw(torch.Generator().manual_seed(seed)) for _, seed in keys}
    # the batches compared hold flipped and unflipped crops at many offsets of the padded image
    assert {flip for *_, flip in draws} == {True, False}
    assert len({(top, left) for top, left, _ in draws}) > 20


def test_training_on_the_device_is_training_with_the_dataloader(tmp_path):
    runs = {}
    for on_device in (False, True):
        trainer = ClassificationTrainer(cfg_with(tmp_path / str(on_device), "SOLVER.MAX_ITER", 3,
                                                 "DATALOADER.ON_DEVICE", on_device))
        trainer.train()
        runs[on_device] = trainer.model.state_dict()
    assert_same_state(runs[False], runs[True])


def test_an_image_folder_is_refused_on_the_device(tmp_path):
    cfg = cfg_with(tmp_path, "DATALOADER.ON_DEVICE", True, "INPUT.RECIPE", "imagenet",
                   "INPUT.TRAIN_SCALE", [36, 48], "INPUT.CROP_SIZE", 32)
    with pytest.raises(ValueError, match="DATALOADER.ON_DEVICE True holds a training set in memory"):
        check_cls_cfg(cfg)
