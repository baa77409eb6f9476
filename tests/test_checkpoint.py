"""Checkpoints of the core (``resnet_backbone.checkpoint``): resume skips a truncated newest
checkpoint, and a shape mismatch is listed."""
import pytest

from resnet_backbone import create_model
from resnet_backbone.checkpoint import CheckpointError, SafeCheckpointer, save_checkpoint_atomic


def test_resume_skips_truncated_checkpoint_and_mismatch_is_listed(tmp_path):
    model = create_model("cifar_resnet20", num_classes=5)
    checkpointer = SafeCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000003", iteration=3)
    checkpointer.save("model_0000007", iteration=7)  # tagged in last_checkpoint, then torn:
    data = (tmp_path / "model_0000007.pth").read_bytes()
    (tmp_path / "model_0000007.pth").write_bytes(data[: len(data) // 2])
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000007.pth"
    assert checkpointer.has_checkpoint()
    assert checkpointer.get_checkpoint_file() == str(tmp_path / "model_0000003.pth")
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 3
    sd = create_model("cifar_resnet20", num_classes=10).state_dict()
    save_checkpoint_atomic({"model": sd}, tmp_path / "c10.pth")
    with pytest.raises(CheckpointError, match=r"linear.weight\s*\|\s*5x64\s*\|\s*10x64"):
        checkpointer.load(str(tmp_path / "c10.pth"), checkpointables=[])

