"""The datasets of a classification config (``resnet_backbone.classification.data``): an
ImageNet folder is checked before the first step, its unreadable images stop the run with one
error naming them or are skipped with one visible line (DATALOADER.SKIP_CORRUPT), and val/ is
labelled with train/'s class indices."""
import shutil

import pytest

from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.data import build_datasets
from resnet_backbone.data.datasets import CorruptImageError, DatasetLayoutError

from helpers import write_synthetic_imagenet


def _cfg(root, *opts):
    cfg = get_cls_cfg()
    cfg.merge_from_list(["DATASETS.NAME", "imagenet", "DATASETS.ROOT", str(root), *opts])
    return cfg


def test_imagenet_check_before_training_stops_or_skips(tmp_path, capsys):
    root = write_synthetic_imagenet(tmp_path, 12, 6, (40, 32), (40, 32))
    bad_train = sorted((root / "train").rglob("*.JPEG"))[3]
    bad_val = sorted((root / "val").rglob("*.JPEG"))[0]
    bad_train.write_bytes(b"")
    bad_val.write_bytes(bad_val.read_bytes()[:200])  # truncated
    with pytest.raises(CorruptImageError, match=f"^cannot read image {bad_train} \\(empty file;"):
        build_datasets(_cfg(root))
    train, val, test = build_datasets(_cfg(root, "DATALOADER.SKIP_CORRUPT", True))
    assert (len(train), len(val), test) == (12, 6, None)
    assert train[[p for p, _ in train.folder.samples].index(str(bad_train))][0] is None
    out = capsys.readouterr().out.splitlines()
    rel_train, rel_val = bad_train.relative_to(root / "train"), bad_val.relative_to(root / "val")
    assert out == [
        f"1 unreadable training images will be skipped (dataset check of {root / 'train'}): "
        f"{rel_train} (empty file)",
        f"1 unreadable validation images will be skipped (dataset check of {root / 'val'}): "
        f"{rel_val} (truncated)"]


def test_imagenet_val_labels_follow_train_classes(tmp_path):
    root = write_synthetic_imagenet(tmp_path, 12, 6, (40, 32), (40, 32))
    shutil.rmtree(root / "val" / "class0")
    train, val, _ = build_datasets(_cfg(root))
    assert val.classes == train.classes and set(val.labels.tolist()) <= {1, 2}
    assert all(f"/class{y}/" in p for p, y in val.folder.samples)
    (root / "val" / "n01440764").mkdir()  # a class train/ lacks
    with pytest.raises(DatasetLayoutError, match="has 1 class folder\\(s\\) that .* lacks: n01440764"):
        build_datasets(_cfg(root))
