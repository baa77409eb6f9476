"""tools/train_cls.py with bad data (in-process, failing before training): a val/ class that
train/ lacks, CIFAR labels out of range and unreadable ImageNet images are each one ``error:``
line on stderr with exit status 2, found before the first step."""
import pickle

import pytest

from resnet_backbone.cli import train_cls
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches

from helpers import REPO, write_synthetic_imagenet

CFG = REPO / "configs" / "classification"
FAST = ["DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False"]


def _one_error_line(capsys, *argv):
    rc = train_cls.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err.rstrip("\n")[len("error: "):]


@pytest.fixture
def imagenet(tmp_path):
    root = write_synthetic_imagenet(tmp_path / "imagenet", 12, 6, (40, 32), (40, 32))
    return root, ["--config-file", CFG / "imagenet" / "resnet18.yaml", "DATASETS.ROOT", root,
                  "MODEL.NUM_CLASSES", 3, "OUTPUT_DIR", tmp_path / "out", *FAST]


def test_val_class_missing_from_train(capsys, imagenet):
    root, argv = imagenet
    (root / "val" / "class2").rename(root / "val" / "class9")
    text = _one_error_line(capsys, *argv)
    assert text.startswith(f"{root / 'val'} has 1 class folder(s) that {root / 'train'} lacks: "
                           "class9. The model learns the 3 classes of ")


def test_unreadable_images_are_listed_before_training(capsys, imagenet):
    root, argv = imagenet
    files = sorted((root / "train").rglob("*.JPEG"))
    files[0].write_bytes(b"")
    files[7].write_bytes(files[7].read_bytes()[:300])
    text = _one_error_line(capsys, *argv)
    assert text == (f"cannot read 2 of the 12 images in {root / 'train'} (dataset check): "
                    f"{files[0].relative_to(root / 'train')} (empty file), "
                    f"{files[7].relative_to(root / 'train')} (truncated). Remove or replace them, "
                    "or set DATALOADER.SKIP_CORRUPT True to skip them")
    assert not (root.parent / "out" / "pixel_mean.pth").exists()  # stopped before the mean image


def test_cifar_label_out_of_range(capsys, tmp_path):
    root = write_cifar10_batches(tmp_path / "cifar", make_synthetic(20, seed=0), make_synthetic(5, seed=1))
    with open(root / "data_batch_4", "rb") as f:
        batch = pickle.load(f)
    batch[b"labels"][2] = 12
    with open(root / "data_batch_4", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    text = _one_error_line(capsys, "--config-file", CFG / "cifar10" / "resnet20.yaml",
                           "DATASETS.ROOT", root, "OUTPUT_DIR", tmp_path / "out", *FAST)
    assert text.startswith(f"{root / 'data_batch_4'}: 1 of 4 labels are outside the valid range "
                           "0..9 (10 classes): 12 (first at index 2).")
