"""Checkpoint safety (issue 8), ``resnet_backbone.checkpoint.state_dict``: a state dict that does not
fit the model says why."""
import logging
import re

import numpy as np
import pytest
import torch

from resnet_backbone.checkpoint import (
    CheckpointError, describe_shape_mismatches, load_checkpoint_file, load_state_dict_checked,
    state_dict_from_checkpoint)
from resnet_backbone import create_model

from checkpoint_helpers import _dump


# --------------------------------------------------------------------------------------------
# Applying a state dict
# --------------------------------------------------------------------------------------------
def test_shape_mismatch_lists_names_and_shapes():
    model = create_model("cifar_resnet20", num_classes=10)
    other = create_model("cifar_resnet20", num_classes=100).state_dict()
    table = describe_shape_mismatches(model.state_dict(), other)
    assert "linear.weight" in table and "10x64" in table and "100x64" in table
    assert "linear.bias" in table and "res2.0.conv1.weight" not in table
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(model, other, source="c100.pth")
    assert "c100.pth" in str(err.value) and "100x64" in str(err.value)
    assert describe_shape_mismatches(model.state_dict(), model.state_dict()) == ""


def test_missing_and_unexpected_keys(tmp_path, caplog):
    model = create_model("cifar_resnet20")
    state = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    state.pop("linear.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(model, state)
    # one table row each: what the model has and the checkpoint lacks, and the other way round
    assert re.search(r"\| missing\s+\| linear\.bias\s+\|", str(err.value)), str(err.value)
    assert re.search(r"\| unexpected\s+\| extra\.weight\s+\|", str(err.value)), str(err.value)
    assert str(err.value).count("\n| ") == 3  # header + the two rows
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.checkpoint"):
        result = load_state_dict_checked(model, state, strict=False)
    assert result.missing_keys == ["linear.bias"] and result.unexpected_keys == ["extra.weight"]
    assert "linear.bias" in caplog.text
    assert torch.equal(model.state_dict()["linear.weight"], state["linear.weight"])


def test_state_dict_from_checkpoint_and_numpy_values(tmp_path):
    model = create_model("cifar_resnet20")
    ref = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    ddp = {"model": {"module." + k: v for k, v in ref.items()}, "iteration": 3}
    path = _dump(ddp, tmp_path / "ddp.pkl", 4)
    state, container = state_dict_from_checkpoint(load_checkpoint_file(path), path)
    assert set(state) == set(ref) and container == "model"
    fresh = create_model("cifar_resnet20")
    load_state_dict_checked(fresh, state)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k])
    with pytest.raises(CheckpointError, match="no state dict"):
        state_dict_from_checkpoint([1, 2], "list.pth")
