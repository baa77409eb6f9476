"""``resnet-make-shards`` and ``resnet-train-cls DATASETS.FORMAT shards`` from the command line:
an ImageNet folder into shards (unreadable images named, or left out), training read over
http:// from a server on loopback, and the bad input of a sharded run: a missing shard (named
before training), a record that is no image (named with its shard), each one ``error:`` line
with exit status 2. (The stream itself: tests/classification/test_shard_data.py.)"""
import functools
import http.server
import json
import threading

import pytest

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.cli import make_shards, train_cls
from resnet_backbone.data.shards import load_index, read_records, write_shards

from helpers import REPO, small_imagenet, spoil_images

TINY = ["--config-file", REPO / "configs" / "classification" / "imagenet" / "resnet18.yaml",
        "DATASETS.FORMAT", "shards", "MODEL.NAME", "cifar_resnet20", "MODEL.NUM_CLASSES", 3,
        "INPUT.TRAIN_SCALE", "[32, 36]", "INPUT.CROP_SIZE", 32, "TEST.RESIZE", 32,
        "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 4, "TEST.FINAL_MODES", "['center']",
        "TEST.EVAL_PERIOD", 100, "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False]


def _run(capsys, main, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_error(capsys, main, *argv) -> str:
    code, _, err = _run(capsys, main, *argv)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err[len("error: "):].rstrip("\n")


@pytest.fixture
def shards(tmp_path, capsys):
    root = small_imagenet(tmp_path / "imagenet", train=12, val=6)
    code, out, _ = _run(capsys, make_shards.main, "imagenet", root, tmp_path / "shards",
                        "--shard-size", 3, "--no-progress")
    assert code == 0, out
    assert "train: 12 images in 4 shards (train-000000.tar ... train-000003.tar)" in out
    assert "val: 6 images in 2 shards" in out
    return root, tmp_path / "shards"


def test_make_shards_names_unreadable_images_or_leaves_them_out(shards, tmp_path, capsys):
    root, out = shards
    assert _one_error(capsys, make_shards.main, "imagenet", root, out).startswith(
        f"{out} already holds train and val shards (train.json, val.json); add --overwrite")
    bad = spoil_images(root / "train")
    text = _one_error(capsys, make_shards.main, "imagenet", root, out, "--overwrite")
    assert text.startswith(f"cannot read 3 of the 12 images in {root / 'train'} (dataset check): "
                           f"{bad[0].relative_to(root / 'train')} (empty file)"), text
    code, printed, _ = _run(capsys, make_shards.main, "imagenet", root, out, "--overwrite",
                            "--skip-corrupt", "--shard-size", 3, "--no-progress")
    assert code == 0 and "train: 9 images in 3 shards" in printed
    assert sorted(p.name for p in out.glob("train-*.tar")) == [f"train-00000{i}.tar" for i in range(3)]


@pytest.fixture
def served(shards):
    """The shards folder served over http on loopback; its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the tool's stderr is what the tests read
            pass
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(shards[1])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_train_cls_reads_shards_over_http(served, shards, tmp_path, capsys):
    code, out, err = _run(capsys, train_cls.main, *TINY, "DATASETS.ROOT", served,
                          "SOLVER.MAX_ITER", 4, "SOLVER.CHECKPOINT_PERIOD", 2,
                          "OUTPUT_DIR", tmp_path / "out")
    assert code == 0, err[-3000:]
    assert "val/center: top-1 error" in out and "(6 images)" in out
    classes = load_checkpoint_file(tmp_path / "out" / "model_final.pth")["classes"]
    assert classes == ["class0", "class1", "class2"]
    # a shard the server no longer has: named when the run reads it (remote shards are not
    # listed before training)
    (shards[1] / "train-000001.tar").unlink()
    text = _one_error(capsys, train_cls.main, *TINY, "DATASETS.ROOT", served, "SOLVER.MAX_ITER", 4,
                      "OUTPUT_DIR", tmp_path / "out2")
    assert text.startswith(f"cannot read shard {served}train-000001.tar (before its first record): ")


def test_missing_shard_and_bad_record_are_one_line(shards, tmp_path, capsys):
    _, out = shards
    (out / "train-000002.tar").rename(tmp_path / "aside.tar")
    text = _one_error(capsys, train_cls.main, *TINY, "DATASETS.ROOT", out, "SOLVER.MAX_ITER", 2,
                      "OUTPUT_DIR", tmp_path / "run")
    assert text == (f"1 of the 4 shards that train.json lists are missing: {out / 'train-000002.tar'}; "
                    "copy them there, or write the shards again with resnet-make-shards")
    assert not (tmp_path / "run" / "pixel_mean.pth").exists()  # stopped before the mean image
    (tmp_path / "aside.tar").rename(out / "train-000002.tar")
    # one shard whose records are not images: the run stops on the first one it decodes
    index = load_index(str(out), "train")
    records = [dict(r, jpeg=b"not an image") for r in read_records([index.urls()[1]])]
    write_shards(iter(records), str(tmp_path / "spoilt"), "train", index.classes, 10)
    (tmp_path / "spoilt" / "train-000000.tar").replace(out / "train-000001.tar")
    text = _one_error(capsys, train_cls.main, *TINY, "DATASETS.ROOT", out, "SOLVER.MAX_ITER", 6,
                      "SOLVER.CHECKPOINT_PERIOD", 1, "OUTPUT_DIR", tmp_path / "run2")
    keys = [r["__key__"] for r in records]
    assert text.startswith("cannot read image ") and f"in shard {out / 'train-000001.tar'}: " in text
    assert text.split()[3].rsplit(".", 1)[0] in keys, text
    assert text.endswith("Write the shards again from fixed files, or set DATALOADER.SKIP_CORRUPT "
                         "True to skip such records")
    for checkpoint in (tmp_path / "run2").glob("model_*.pth"):  # what was written is whole
        load_checkpoint_file(checkpoint)
    code, printed, _ = _run(capsys, train_cls.main, *TINY, "DATASETS.ROOT", out, "SOLVER.MAX_ITER", 6,
                            "DATALOADER.SKIP_CORRUPT", True, "OUTPUT_DIR", tmp_path / "run3")
    assert code == 0 and "unreadable training images were skipped" in printed
    assert json.loads((tmp_path / "run3" / "final_results.json").read_text())["val/center"]["count"] == 6
