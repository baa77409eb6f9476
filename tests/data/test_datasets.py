"""Datasets in their real formats (resnet_backbone.data.datasets): CIFAR-10 python batches written
and read back (labels in range), a pickle with code refused, ImageNet-folder layout errors, val/
labelled with train/'s classes, a corrupt image named or skipped (and counted by the
evaluation), the dataset check's verdict applied (its own tests: test_image_check.py)."""
import pytest
import torch

from resnet_backbone import create_model
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.transforms import Normalizer, TestViews
from resnet_backbone.data.datasets import (CorruptImageError, DatasetLayoutError, ImageFolderDataset,
                                           load_cifar10)
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches, write_image_folder

from helpers import small_imagenet, spoil_images


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



# --- val/ labelled with train/'s classes; CIFAR labels in range; the dataset check -------------

def test_val_uses_train_class_indices_and_names_extra_classes(tmp_path, caplog):
    import shutil

    train = ImageFolderDataset(str(small_imagenet(tmp_path)), "train")
    shutil.rmtree(tmp_path / "val" / "class0")  # a partial val split: fine, said once
    with caplog.at_level("INFO", logger="resnet_backbone.data.datasets"):
        val = ImageFolderDataset(str(tmp_path), "val", classes=train.classes)
    assert val.classes == train.classes == ["class0", "class1", "class2"]
    assert {(p.split("/")[-2], y) for p, y in val.folder.samples} <= {("class1", 1), ("class2", 2)}
    assert val.labels.tolist() == [y for _, y in val.folder.samples] and 1 in val.labels.tolist()
    assert "has no folder for 1 of the 3 classes" in caplog.text and "(class0)" in caplog.text
    for name in ["n0", "n1", "n2", "n3", "n4", "n5", "zzz"]:
        (tmp_path / "val" / name).mkdir()
    with pytest.raises(DatasetLayoutError) as e:
        ImageFolderDataset(str(tmp_path), "val", classes=train.classes)
    assert str(e.value).startswith(f"{tmp_path / 'val'} has 7 class folder(s) that "
                                   f"{tmp_path / 'train'} lacks: n0, n1, n2, n3, n4 and 2 more. ")
    assert f"remove those folders from {tmp_path / 'val'}" in str(e.value)


@pytest.mark.parametrize("bad, shown", [([12], "12"), ([-1, 10, 12], "-1, 10, 12")])
@pytest.mark.parametrize("batch", ["data_batch_2", "test_batch"])
def test_cifar_labels_out_of_range_name_file_values_and_range(tmp_path, batch, bad, shown):
    import pickle

    write_cifar10_batches(tmp_path, make_synthetic(20, seed=0), make_synthetic(6, seed=1))
    with open(tmp_path / batch, "rb") as f:
        content = pickle.load(f)
    content[b"labels"][1:1 + len(bad)] = bad
    with open(tmp_path / batch, "wb") as f:
        pickle.dump(content, f, protocol=2)
    with pytest.raises(DatasetLayoutError) as e:
        load_cifar10(str(tmp_path), train=batch != "test_batch")
    assert str(e.value) == (
        f"{tmp_path / batch}: {len(bad)} of {len(content[b'labels'])} labels are outside the valid "
        f"range 0..9 (10 classes): {shown} (first at index 1). The file is damaged or not a "
        "CIFAR-10 batch; replace it with the one from cifar-10-python.tar.gz")


def test_check_finds_empty_truncated_and_unreadable_images(tmp_path, monkeypatch):
    from PIL import Image

    from resnet_backbone.data.image_check import check_image

    empty, cut, junk = spoil_images(small_imagenet(tmp_path) / "train")
    with Image.open(cut) as im:  # PIL's verify() passes a truncated JPEG ...
        im.verify()
    assert check_image(str(cut)) == "truncated"  # ... the check decodes one without its end
    with pytest.raises(CorruptImageError) as e:
        ImageFolderDataset(str(tmp_path), "train").check()
    rel = [p.relative_to(tmp_path / "train") for p in (empty, cut, junk)]
    assert str(e.value) == (
        f"cannot read 3 of the 12 images in {tmp_path / 'train'} (dataset check): "
        f"{rel[0]} (empty file), {rel[1]} (truncated), {rel[2]} (not an image). Remove or replace "
        "them, or set DATALOADER.SKIP_CORRUPT True to skip them")
    ds = ImageFolderDataset(str(tmp_path), "train", skip_corrupt=True)
    report = ds.check()
    assert report.skip_message("training").startswith(
        f"3 unreadable training images will be skipped (dataset check of {tmp_path / 'train'}): "
        f"{rel[0]} (empty file), {rel[1]} (truncated), ")
    # kept at their indices (the training order does not change), read as skipped unopened
    opened, real_open = [], Image.open
    monkeypatch.setattr(Image, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    assert len(ds) == 12 and [ds[i][0] is None for i in range(4)] == [True, True, True, False]
    assert opened == [ds.folder.samples[3][0]]
