"""The public names of ``resnet_backbone.checkpoint`` (the package re-exports its modules')."""
from resnet_backbone import checkpoint as ckpt
from resnet_backbone.checkpoint import CheckpointError, UnsafeCheckpointError


def test_public_names_kept():
    assert issubclass(UnsafeCheckpointError, CheckpointError)
    assert issubclass(CheckpointError, RuntimeError)
    assert set(ckpt.__all__) <= set(dir(ckpt))
