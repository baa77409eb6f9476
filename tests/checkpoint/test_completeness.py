"""Checkpoint safety (issue 8), ``resnet_backbone.checkpoint.completeness``: a truncated or corrupt
file is incomplete and gets a clear error (not an unsafe one), and ``--resume`` skips
truncated checkpoints."""
import logging
import os
import pickle
import shutil
import time
import zipfile

import pytest
import torch

from resnet_backbone.checkpoint import (
    CheckpointError, UnsafeCheckpointError, checkpoint_is_complete, latest_complete_checkpoint,
    load_checkpoint_file, verify_checkpoint)

from checkpoint_helpers import _arrays, _complete_pth, _msra


# --------------------------------------------------------------------------------------------
# Truncated and corrupt files
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_pth_is_incomplete_not_unsafe(tmp_path, fraction):
    data = _complete_pth(tmp_path / "full.pth").read_bytes()
    path = tmp_path / "model_0000010.pth"
    path.write_bytes(data[:int(len(data) * fraction)] if fraction else data[:-1])
    assert not checkpoint_is_complete(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path)
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert str(path) in str(err.value)


def test_corrupt_files_get_clear_errors(tmp_path):
    full = _complete_pth(tmp_path / "full.pth")
    assert checkpoint_is_complete(full) and checkpoint_is_complete(full, deep=True)
    flipped = tmp_path / "flipped.pth"
    data = bytearray(full.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: only the CRC check sees it
    flipped.write_bytes(bytes(data))
    assert checkpoint_is_complete(flipped) and not checkpoint_is_complete(flipped, deep=True)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(100)}, legacy, _use_new_zipfile_serialization=False)
    cut = tmp_path / "legacy_cut.pth"
    cut.write_bytes(legacy.read_bytes()[:-5])
    notzip = tmp_path / "other.pth"
    with zipfile.ZipFile(notzip, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    cases = {tmp_path / "missing.pth": "does not exist", tmp_path / "empty.pth": "is empty",
             tmp_path / "junk.pth": "neither a torch checkpoint nor a readable pickle",
             cut: "truncated or corrupt", notzip: "truncated or corrupt",
             tmp_path / "cut.pkl": "truncated or corrupt"}
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.pth").write_bytes(b"hello, not a checkpoint")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(_msra(_arrays()), 2)[:-100])
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words) as err:
            load_checkpoint_file(path)
        assert not isinstance(err.value, UnsafeCheckpointError), path
        assert str(path) in str(err.value)
        assert not checkpoint_is_complete(path)
    with pytest.raises(CheckpointError, match="empty"):
        verify_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no data.pkl"):
        verify_checkpoint(notzip)


# --------------------------------------------------------------------------------------------
# Resume: newest complete checkpoint
# --------------------------------------------------------------------------------------------
def test_latest_complete_checkpoint_skips_truncated(tmp_path, caplog):
    assert latest_complete_checkpoint(tmp_path / "nowhere") is None
    assert latest_complete_checkpoint(tmp_path) is None
    for it in (99, 100, 1000):  # numeric order, not string order
        _complete_pth(tmp_path / f"model_{it}.pth", value=it, size=100)
    newest = str(tmp_path / "model_1000.pth")
    assert latest_complete_checkpoint(tmp_path, "model_*.pth") == newest
    data = (tmp_path / "model_1000.pth").read_bytes()
    (tmp_path / "model_2000.pth").write_bytes(data[: len(data) // 2])  # a crash mid-write
    (tmp_path / ".model_3000.pth.abc.tmp").write_bytes(data)  # a temp file is never resumed
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.checkpoint"):
        assert latest_complete_checkpoint(tmp_path, "model_*.pth") == newest
    assert "model_2000.pth" in caplog.text and "truncated" in caplog.text
    _complete_pth(tmp_path / "model_final.pth", size=100)  # written after all numbered ones
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "model_final.pth")
    shutil.copy(tmp_path / "model_100.pth", tmp_path / "model_1000_b.pth")  # same number: mtime
    os.utime(tmp_path / "model_1000_b.pth", (time.time() + 5, time.time() + 5))
    assert latest_complete_checkpoint(tmp_path, "model_1*.pth").endswith("model_1000_b.pth")
