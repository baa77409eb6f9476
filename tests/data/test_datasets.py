"""Datasets in their real formats (resnet_backbone.data): CIFAR-10 python batches written and read
back, a pickle with code refused, ImageNet-folder layout errors, the synthetic images."""
import pytest
import torch

from resnet_backbone.data.datasets import DatasetLayoutError, ImageFolderDataset, load_cifar10
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches


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


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(200, seed=5), make_synthetic(200, seed=5)
    assert torch.equal(a.images, b.images) and a.images.shape == (200, 3, 32, 32)
    assert a.images.dtype == torch.uint8 and len(set(a.labels.tolist())) == 10


def test_bad_imagenet_layout_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist.*train/ and val/"):
        ImageFolderDataset(str(tmp_path / "nope"), "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetLayoutError, match="no class folders.*one sub-folder per class"):
        ImageFolderDataset(str(tmp_path), "train")
