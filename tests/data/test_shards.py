"""Tar shards in webdataset's layout (``resnet_backbone.data.shards``): what ``write_shards`` writes
is what webdataset reads back (bytes, labels, COCO annotations), byte-identical for the same
seed; a missing shard, a damaged one, a record without label and a file that is no index each
raise one ``ShardError`` naming the file and the record."""
import json
import tarfile

import pytest

from resnet_backbone.checkpoint import CheckpointError
from resnet_backbone.data.datasets import ImageFolderDataset
from resnet_backbone.data.shards import (ShardError, coco_records, image_folder_records,
                                         load_index, missing_local_shards, read_records,
                                         record_image, record_label, write_shards)

from helpers import small_imagenet


@pytest.fixture
def folder(tmp_path):
    return ImageFolderDataset(str(small_imagenet(tmp_path / "imagenet", train=11, val=3)), "train")


def _write(dataset, out, shard_size=4, seed=0):
    return write_shards(image_folder_records(dataset, seed), str(out), "train", dataset.classes,
                        shard_size)


def test_records_read_back_as_the_folder_holds_them(folder, tmp_path):
    index = _write(folder, tmp_path / "shards")
    assert [n for _, n in index.shards] == [4, 4, 3]
    again = load_index(str(tmp_path / "shards"), "train")
    assert again.shards == index.shards and again.classes == ["class0", "class1", "class2"]
    records = list(read_records(again.urls()))
    by_key = {r["__key__"]: r for r in records}
    assert len(by_key) == len(records) == 11
    for path, label in folder.folder.samples:
        key = path[len(folder.root) + 1:].rsplit(".", 1)[0]
        ext, data = record_image(by_key[key])
        assert ext == "jpeg" and data == open(path, "rb").read() and record_label(by_key[key]) == label
    # the records are shuffled (mixed classes in a shard), and the same for the same seed
    assert [record_label(r) for r in records] != sorted(record_label(r) for r in records)
    _write(folder, tmp_path / "again")
    for name, _ in index.shards:
        assert (tmp_path / "shards" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_rewriting_fewer_shards_removes_the_stale_ones(folder, tmp_path):
    _write(folder, tmp_path / "shards", shard_size=2)  # 6 shards
    index = _write(folder, tmp_path / "shards", shard_size=5)  # 3 shards
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == [n for n, _ in index.shards]


def test_missing_and_damaged_shards_are_named(folder, tmp_path):
    index = _write(folder, tmp_path / "shards")
    first, second, third = index.urls()
    tar = open(second, "rb").read()
    with tarfile.open(second) as t:
        members = t.getmembers()
    # cut inside the third record's image: two records (4 files) are read before the damage
    cut = members[5].offset_data + members[5].size // 2
    open(second, "wb").write(tar[:cut])
    with pytest.raises(ShardError) as e:
        list(read_records([first, second]))
    key = members[2].name.rsplit(".", 1)[0]
    assert str(e.value).startswith(f"cannot read shard {second} (after record {key}): "), str(e.value)
    (tmp_path / "shards" / "train-000002.tar").unlink()
    assert missing_local_shards(index) == [third]
    with pytest.raises(ShardError, match=f"cannot read shard {third} \\(before its first record\\): "
                                         ".*No such file or directory"):
        list(read_records([third]))


def test_incomplete_record_and_bad_index_are_named(tmp_path):
    records = [{"__key__": "a/b", "jpeg": b"x"}]
    index = write_shards(records, str(tmp_path), "train", ["c"], 10)
    [record] = read_records(index.urls())
    with pytest.raises(ShardError, match=r"record a/b of shard .*train-000000.tar has no class "
                                         r"index \(.cls file"):
        record_label(record)
    (tmp_path / "val.json").write_text(json.dumps({"shardlist": []}))
    with pytest.raises(ShardError, match=r"val.json is not a shard index \(__kind__ is None"):
        load_index(str(tmp_path), "val")
    with pytest.raises(ShardError, match="cannot read the shard index .*test.json: .*No such file"):
        load_index(str(tmp_path), "test")
    with pytest.raises(CheckpointError, match="train-000000.tar failed .*two records have the key a/b"):
        write_shards(records * 2, str(tmp_path / "twice"), "train", ["c"], 10)


def test_coco_split_keeps_each_images_annotations(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    images = [{"id": i, "file_name": f"{i:03d}.v2.jpg", "width": 20, "height": 10} for i in (7, 3, 5)]
    for image in images:
        Image.new("RGB", (20, 10), (image["id"] * 30, 0, 0)).save(tmp_path / "images" / image["file_name"])
    annotations = [{"id": 1, "image_id": 7, "bbox": [1, 1, 5, 5], "category_id": 2, "area": 25, "iscrowd": 0},
                   {"id": 2, "image_id": 7, "bbox": [2, 2, 4, 4], "category_id": 1, "area": 16, "iscrowd": 0},
                   {"id": 3, "image_id": 5, "bbox": [0, 0, 3, 3], "category_id": 2, "area": 9, "iscrowd": 0}]
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}]}
    (tmp_path / "train.json").write_text(json.dumps(coco))
    names, categories, count, records = coco_records(str(tmp_path / "train.json"),
                                                     str(tmp_path / "images"), seed=0)
    assert names == ["cat", "dog"] and count == 3
    index = write_shards(records, str(tmp_path / "shards"), "train2017", names, 2,
                         {"categories": categories})
    read = {r["__key__"]: r for r in read_records(index.urls())}
    assert sorted(read) == ["003_v2", "005_v2", "007_v2"]
    for image in images:
        record = read[f"{image['id']:03d}_v2"]
        assert json.loads(record["json"]) == {
            "image": image, "annotations": [a for a in annotations if a["image_id"] == image["id"]]}
        assert record["jpg"] == (tmp_path / "images" / image["file_name"]).read_bytes()
    assert load_index(str(tmp_path / "shards"), "train2017").extra["categories"] == categories
    (tmp_path / "images" / "003.v2.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="cannot read image .*003.v2.jpg of .*train.json"):
        list(coco_records(str(tmp_path / "train.json"), str(tmp_path / "images"), 0)[3])
    skipped = []
    left = list(coco_records(str(tmp_path / "train.json"), str(tmp_path / "images"), 0, skipped)[3])
    assert len(left) == 2 and skipped == [str(tmp_path / "images" / "003.v2.jpg")]
