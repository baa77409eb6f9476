"""The classification trainer (``resnet_backbone.classification.engine``): exact resume in
process, and the best weights picked on held-out training data only. (Resume after SIGKILL and
the 2-process DDP run, through the tool: tests/cli/test_train_cls.py.)"""
import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.classification.engine import ClassificationTrainer

from helpers import assert_same_state, cls_cfg_with as cfg_with

#: The ImageNet augmentation (uint8 crops, lighting and mean on the device) on the synthetic images.
IMAGENET_RECIPE = ("INPUT.RECIPE", "imagenet", "INPUT.TRAIN_SCALE", [36, 48], "INPUT.CROP_SIZE", 32)


@pytest.mark.parametrize("recipe", [(), IMAGENET_RECIPE], ids=["cifar", "imagenet"])
def test_resume_is_bit_identical(tmp_path, recipe):
    full = ClassificationTrainer(cfg_with(tmp_path / "full", "SOLVER.MAX_ITER", 7, *recipe))
    full.train()
    part = ClassificationTrainer(cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 4, *recipe))
    part.train()  # stops at 4 with a checkpoint: then a fresh process-like trainer resumes
    resumed = ClassificationTrainer(cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 7, *recipe),
                                    resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    for sa, sb in zip(full.optimizer.state.values(), resumed.optimizer.state.values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    assert abs(full.optimizer.param_groups[0]["lr"] - 0.001) < 1e-12  # 0.1 / 10 at 3, / 10 at 5
    rows = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "4", "6", "7", "7"]


def test_best_weights_are_picked_on_held_out_training_data_only(tmp_path):
    """With DATASETS.VAL_HOLDOUT the validation images come out of the training set and pick
    model_best.pth; without it the evaluated set is the test set, and nothing is picked on it."""
    held_out = ClassificationTrainer(cfg_with(tmp_path / "holdout", "SOLVER.MAX_ITER", 4,
                                              "DATASETS.VAL_HOLDOUT", 16))
    held_out.train()
    best = load_checkpoint_file(tmp_path / "holdout" / "model_best.pth")
    assert best["val_top1_err"] == held_out.best_val and len(held_out.val_set) == 16
    no_split = ClassificationTrainer(cfg_with(tmp_path / "nosplit", "SOLVER.MAX_ITER", 4))
    no_split.train()
    assert not (tmp_path / "nosplit" / "model_best.pth").exists()
    assert (tmp_path / "nosplit" / "model_final.pth").is_file()
