"""The loader rows of ``tools/benchmark.py`` read the same JPEG files from a folder and from tar
shards and report both (the speed figures themselves are in BENCHMARKS.md)."""
from resnet_backbone.benchmarks.loader import loader_rows


def test_loader_rows_time_both_readers():
    rows = loader_rows(num_images=8, width=160, height=120, batch=4, shard_size=3, repeats=1)
    assert [r["reader"] for r in rows] == ["image folder (a file per image)",
                                           "tar shards (3 images each, webdataset)"]
    assert all(r["img_per_s_per_core"] > 0 and r["images"].startswith("8 JPEG") for r in rows)
    assert rows[0]["vs_folder"] == 1.0
