"""The dataset check of image files (resnet_backbone.data.image_check): the unreadable ones named
(the list capped), the verdicts cached by (name, size, mtime) outside the dataset, the same
verdicts from its process pool."""
import pytest

from resnet_backbone.data.datasets import CorruptImageError, ImageFolderDataset

from helpers import small_imagenet, spoil_images


def test_check_names_a_single_file_in_full_and_caps_the_list(tmp_path):
    from resnet_backbone.data import image_check

    root = small_imagenet(tmp_path, train=24)
    files = sorted((root / "train").rglob("*.JPEG"))
    files[5].write_bytes(b"")
    with pytest.raises(CorruptImageError, match=f"^cannot read image {files[5]} \\(empty file; "
                       "found by the dataset check of the 24 images in "):
        ImageFolderDataset(str(root), "train").check()
    for f in files[:8]:
        f.write_bytes(b"")
    report = image_check.check_image_folder(root / "train", [str(f) for f in files])
    assert len(report.bad) == 8 and report.names().endswith(
        f" and 3 more (all listed in {image_check.cache_files(root / 'train')[0]})")
    assert report.names().count("(empty file)") == image_check.SHOWN == 5


def test_check_is_cached_by_size_and_mtime(tmp_path, monkeypatch):
    import json
    import os

    from resnet_backbone.data import image_check

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home_cache"))
    split = small_imagenet(tmp_path / "data", train=12) / "train"
    paths = sorted(str(p) for p in split.rglob("*.JPEG"))
    cache = image_check.cache_files(split)[0]
    assert str(cache).startswith(str(tmp_path / "home_cache" / "resnet_backbone" / "image_check"))
    first = image_check.check_image_folder(split, paths)
    assert first.verified == 12 and not first.bad and first.cache_file == str(cache)
    assert not list(split.glob(".*"))  # nothing written into the dataset
    assert image_check.check_image_folder(split, paths).verified == 0  # unchanged: nothing decoded
    changed = paths[0]
    in_folder = sum(os.path.dirname(p) == os.path.dirname(changed) for p in paths)
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # another mtime: its folder again
    touched = image_check.check_image_folder(split, paths)
    assert touched.verified == in_folder < 12 and not touched.bad
    with open(changed, "r+b") as f:  # another size
        f.truncate(st.st_size // 2)
    again = image_check.check_image_folder(split, paths)
    assert again.verified == in_folder and again.bad == [(changed, "truncated")]
    cached = json.loads(cache.read_text())
    assert cached["unreadable"] == [[os.path.relpath(changed, split), "truncated"]]
    # a cache that cannot be written (here: its name taken by a folder): checked, not cached
    cache.unlink()
    cache.mkdir()
    third = image_check.check_image_folder(split, paths)
    assert third.verified == 12 and third.cache_file is None and third.bad == again.bad
    assert image_check.check_image_folder(split, paths).verified == 12


def test_check_in_a_process_pool_finds_the_same(tmp_path, monkeypatch):
    from resnet_backbone.data import image_check

    split = small_imagenet(tmp_path) / "train"
    spoil_images(split)
    paths = sorted(str(p) for p in split.rglob("*.JPEG"))
    serial = image_check.check_image_folder(split, paths, use_cache=False, workers=1)
    monkeypatch.setattr(image_check, "SERIAL_BELOW", 0)
    monkeypatch.setattr(image_check, "_CHUNK", 5)  # 3 chunks for 2 processes
    pooled = image_check.check_image_folder(split, paths, use_cache=False, workers=2)
    assert pooled.bad == serial.bad and [why for _, why in serial.bad] == [
        "empty file", "truncated", "not an image"]
