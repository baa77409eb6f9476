"""Datasets in their real formats (resnet_backbone.data.datasets): CIFAR-10 python batches written
and read back, a pickle with code refused, ImageNet-folder layout errors, a corrupt image named or
skipped (and counted by the evaluation)."""
import pytest
import torch

from resnet_backbone import create_model
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.transforms import Normalizer, TestViews
from resnet_backbone.data.datasets import (CorruptImageError, DatasetLayoutError, ImageFolderDataset,
                                           load_cifar10)
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches, write_image_folder


def test_cifar_batches_roundtrip(tmp_path):
    train, test = make_synthetic(20, seed=0), make_synthetic(7, seed=1)
    write_cifar10_batches(tmp_path / "cifar-10-batches-py", train, test)
    got = load_cifar10(str(tmp_path), train=True)  # the parent folder is accepted too
    assert torch.equal(got.images, train.images) and torch.equal(got.labels, train.labels)
    assert got.classes == train.classes
    assert torch.equal(load_cifar10(str(tmp_path), train=False).images, test.images)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetLayoutError, match="missing data_batch_3.*data_batch_1 ... data_batch_5"):
        load_cifar10(str(tmp_path / "cifar-10-batches-py"), train=True)


def test_cifar_batch_pickle_with_code_is_refused(tmp_path):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    write_cifar10_batches(tmp_path, make_synthetic(10), make_synthetic(5))
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DatasetLayoutError, match="os.system|posix.system"):
        load_cifar10(str(tmp_path), train=False)


def test_bad_imagenet_layout_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist.*train/ and val/"):
        ImageFolderDataset(str(tmp_path / "nope"), "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class folders.*one sub-folder per class"):
        ImageFolderDataset(str(tmp_path), "train")


def test_corrupt_image_is_named_or_skipped(tmp_path):
    write_image_folder(tmp_path, "val", make_synthetic(4, num_classes=2))
    bad = sorted((tmp_path / "val").rglob("*.JPEG"))[1]
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(CorruptImageError, match=str(bad)):
        ImageFolderDataset(str(tmp_path), "val")[1]
    ds = ImageFolderDataset(str(tmp_path), "val", skip_corrupt=True)
    out = evaluate(create_model("cifar_resnet20", num_classes=2),
                   ds, TestViews(Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])), "center")
    assert out["count"] == 3 and out["skipped"] == 1

