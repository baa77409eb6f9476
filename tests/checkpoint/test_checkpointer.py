"""Checkpoint safety (issue 8), ``resnet_backbone.checkpoint.checkpointer``: a fault while the fvcore
checkpointer saves keeps the previous checkpoint and its tag, and resume continues from them."""
import errno
import os

import pytest
import torch

from resnet_backbone import create_model
from resnet_backbone.checkpoint import CheckpointError, SafeCheckpointer, save_checkpoint_atomic


# --------------------------------------------------------------------------------------------
# Faults while writing: the previous files stay, the error says what happened
# --------------------------------------------------------------------------------------------
def _checkpointer(tmp_path):
    from resnet_backbone.checkpoint import SafeCheckpointer
    return SafeCheckpointer(torch.nn.Linear(4, 2), str(tmp_path))


def test_full_disk_during_a_save_keeps_the_previous_checkpoint_and_tag(tmp_path, monkeypatch):
    checkpointer = _checkpointer(tmp_path)
    checkpointer.save("model_0000009", iteration=9)
    before = (tmp_path / "model_0000009.pth").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the data is written, then cannot be synced
    with pytest.raises(CheckpointError, match="model_0000019.pth failed .No space left on device"):
        checkpointer.save("model_0000019", iteration=19)
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert (tmp_path / "model_0000009.pth").read_bytes() == before
    assert not (tmp_path / "model_0000019.pth").exists()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]  # no temp
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 9


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

