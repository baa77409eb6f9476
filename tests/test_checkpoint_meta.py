"""``resnet_backbone.checkpoint_meta.backbone_meta`` (core) reads a ``train_cls`` checkpoint's
YAML config dump with ``yaml`` alone: the same metadata as the classification config gives, no
classification import, and a clear error for a config without a key it reads."""
import subprocess
import sys

import pytest
import torch

from resnet_backbone.checkpoint_meta import META_KEYS, backbone_meta
from resnet_backbone.classification.config import cfg_from_checkpoint, get_cls_cfg
from resnet_backbone.models import create_model


def checkpoint(*opts):
    cfg = get_cls_cfg()
    cfg.merge_from_list(list(opts))
    model = create_model(cfg.MODEL.NAME, num_classes=cfg.MODEL.NUM_CLASSES)
    return {"cfg": cfg.dump(), "model": model.state_dict(),
            "pixel_mean": torch.full((3, 32, 32), 100.0)}


@pytest.mark.parametrize("opts", [(), ("MODEL.NAME", "resnet50", "MODEL.SHORTCUT", "C",
                                       "MODEL.STRIDE_IN_1X1", False, "MODEL.NORM", "SyncBN",
                                       "INPUT.PIXEL_STD", [58.4, 57.1, 57.4])])
def test_backbone_meta_reads_what_the_classification_config_says(opts):
    state = checkpoint(*opts)
    cfg = cfg_from_checkpoint(state)
    meta = backbone_meta(state)
    assert meta["model_name"] == cfg.MODEL.NAME and meta["norm"] == cfg.MODEL.NORM
    assert meta["stride_in_1x1"] is bool(cfg.MODEL.STRIDE_IN_1X1)
    assert meta["pixel_std"] == list(cfg.INPUT.PIXEL_STD) and meta["pixel_mean"] == [100.0] * 3
    assert meta["shortcut"] == (cfg.MODEL.SHORTCUT or ("A" if meta["cifar"] else "B"))
    assert meta["bn_batches"] == 0


def test_backbone_meta_names_a_missing_key():
    state = checkpoint()
    state["cfg"] = state["cfg"].replace("STRIDE_IN_1X1", "OTHER_KEY")
    with pytest.raises(ValueError, match="MODEL.STRIDE_IN_1X1"):
        backbone_meta(state)
    with pytest.raises(ValueError, match="no 'cfg' entry"):
        backbone_meta({"model": {}})
    assert "MODEL.NAME" in META_KEYS


def test_checkpoint_meta_imports_no_classification():
    code = ("import sys, resnet_backbone.checkpoint_meta; "
            "print([m for m in sys.modules if m.startswith('resnet_backbone.classification')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]
