"""``resnet_backbone.detection.validation``: the checks themselves, on tiny COCO-format datasets
in the real format (real JPEG files written by PIL; a truncated file is a real one with its
last bytes cut off). No training run: each test takes milliseconds."""
import json
import os
from pathlib import Path

from PIL import Image

from resnet_backbone.detection.validation import (
    MISSING, Problem, check_coco, check_images, image_problem, problems_table)


def write_jpeg(path: Path, size=(40, 32), seed: int = 0) -> Path:
    """A real JPEG of ``size`` (W, H) with some texture (so it has a real entropy-coded scan)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.effect_noise(size, 40 + seed).convert("RGB")
    im.save(path, "JPEG", quality=90)
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    """Cut the last bytes off ``path`` (as an interrupted download or copy does)."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def write_coco_jpegs(root: Path, n: int = 4, num_classes: int = 2):
    """(json_file, image_root, data) of ``n`` 40x32 JPEGs with one box each, COCO instances
    format as in ``instances_train2017.json``."""
    image_root = root / "images"
    images, annotations = [], []
    for i in range(1, n + 1):
        name = f"{i:012d}.jpg"
        write_jpeg(image_root / name, seed=i)
        images.append({"license": 1, "file_name": name, "coco_url": "", "height": 32, "width": 40,
                       "date_captured": "2013-11-14 11:18:45", "flickr_url": "", "id": i})
        annotations.append({"segmentation": [[4.0, 4.0, 20.0, 4.0, 20.0, 16.0, 4.0, 16.0]],
                            "area": 192.0, "iscrowd": 0, "image_id": i,
                            "bbox": [4.0, 4.0, 16.0, 12.0], "category_id": 1 + i % num_classes,
                            "id": 100 + i})
    data = {"info": {"description": "tiny", "version": "1.0", "year": 2026},
            "licenses": [{"url": "", "id": 1, "name": "test"}], "images": images,
            "annotations": annotations,
            "categories": [{"supercategory": "shape", "id": c + 1, "name": f"class{c}"}
                           for c in range(num_classes)]}
    json_file = root / "instances.json"
    json_file.write_text(json.dumps(data))
    return str(json_file), str(image_root), data


def rewrite(json_file, data) -> None:
    Path(json_file).write_text(json.dumps(data))


# ------------------------------------------------------------------------------ image files

def test_image_problem_names_missing_empty_truncated_and_foreign_files(tmp_path):
    good = write_jpeg(tmp_path / "good.jpg")
    assert image_problem(str(good)) is None
    cut = truncate(write_jpeg(tmp_path / "cut.jpg"))
    with Image.open(cut) as im:
        im.verify()  # PIL's verify() alone passes a truncated JPEG: the check must not stop there
    assert image_problem(str(cut)) == "truncated image file"
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert image_problem(str(tmp_path / "empty.jpg")) == "empty image file"
    (tmp_path / "text.jpg").write_text("<html>404 Not Found</html>")
    assert image_problem(str(tmp_path / "text.jpg")) == "not an image PIL can read"
    assert image_problem(str(tmp_path / "nowhere.jpg")) == MISSING
    png = tmp_path / "cut.png"
    Image.effect_noise((40, 32), 40).save(png)
    truncate(png)
    assert image_problem(str(png)) is not None


def test_check_images_reuses_the_cached_result_of_unchanged_files_only(tmp_path):
    paths = [str(write_jpeg(tmp_path / f"{i}.jpg", seed=i)) for i in range(6)]
    cache = str(tmp_path / "cache" / "check.json")
    first = check_images(paths, cache, workers=3)
    assert (first.total, first.bad, first.verified) == (6, {}, 6)
    assert check_images(paths, cache, workers=3).verified == 0  # all from the cache
    truncate(Path(paths[2]))  # a changed file (size, mtime) is verified again
    again = check_images(paths + [str(tmp_path / "gone.jpg")], cache, workers=3)
    assert again.verified == 1
    assert again.bad == {paths[2]: "truncated image file", str(tmp_path / "gone.jpg"): MISSING}
    assert check_images(paths, cache).bad == {paths[2]: "truncated image file"}  # cached bad too


# ------------------------------------------------------------------------------- COCO json

def test_check_coco_finds_missing_and_truncated_images(tmp_path):
    json_file, root, _ = write_coco_jpegs(tmp_path)
    os.remove(os.path.join(root, "000000000002.jpg"))
    truncate(Path(root) / "000000000003.jpg")
    found = check_coco(json_file, root)
    assert found.bad_images == {2: os.path.join(root, "000000000002.jpg"),
                                3: os.path.join(root, "000000000003.jpg")}
    rows = {(p.image_id, p.what, p.kind) for p in found.problems}
    assert rows == {(2, MISSING, "image"), (3, "truncated image file", "image")}
    assert found.fatal == [] and found.images == 4


def test_repeated_image_ids_are_fatal_and_name_the_files(tmp_path):
    json_file, root, data = write_coco_jpegs(tmp_path)
    data["images"][2]["id"] = 2  # 000000000003.jpg now claims id 2 too
    data["annotations"][2]["image_id"] = 2
    rewrite(json_file, data)
    found = check_coco(json_file, root)
    assert [p.what for p in found.problems] == [
        "image id 2 is used by 2 'images' entries (000000000002.jpg, 000000000003.jpg)"] * 2
    assert {p.kind for p in found.problems} == {"fatal"}
    (text,) = found.fatal
    assert text == (f"{json_file} has 1 image id used by more than one 'images' entry (id 2: "
                    "000000000002.jpg, 000000000003.jpg): detectron2 would keep one entry per id "
                    "and give it the boxes of the others; give each image its own id, and its "
                    "annotations that image_id")


def test_repeated_annotation_ids_are_fatal(tmp_path):
    json_file, root, data = write_coco_jpegs(tmp_path)
    data["annotations"][3]["id"] = data["annotations"][0]["id"]
    rewrite(json_file, data)
    found = check_coco(json_file, root)
    assert [(p.image_id, p.annotation, p.what) for p in found.problems] == [
        (1, 101, "annotation id 101 is used 2 times"), (4, 101, "annotation id 101 is used 2 times")]
    assert found.fatal == [f"{json_file} has 1 annotation id used more than once (id 101: 2 "
                           "times): detectron2 stops on them and COCO evaluation would count one "
                           "box in place of another; give each annotation its own id"]


def test_more_categories_than_num_classes_is_fatal(tmp_path):
    json_file, root, _ = write_coco_jpegs(tmp_path, num_classes=3)
    assert check_coco(json_file, root, num_classes=3).fatal == []
    assert check_coco(json_file, root).fatal == []  # not checked without the config value
    found = check_coco(json_file, root, num_classes=2)
    assert found.fatal == [f"{json_file} has 3 categories but MODEL.ROI_HEADS.NUM_CLASSES is 2: "
                           "'class2' would be trained as background; set "
                           "MODEL.ROI_HEADS.NUM_CLASSES 3"]


def test_one_table_lists_every_kind_of_problem_fatal_first(tmp_path):
    json_file, root, data = write_coco_jpegs(tmp_path, n=5, num_classes=3)
    data["annotations"][0]["bbox"] = [100.0, 100.0, 5.0, 5.0]  # outside its 40x32 image
    data["images"][4]["id"] = 4  # a repeated image id
    data["annotations"][4]["image_id"] = 4
    rewrite(json_file, data)
    os.remove(os.path.join(root, "000000000002.jpg"))
    truncate(Path(root) / "000000000003.jpg")
    table = problems_table(check_coco(json_file, root, num_classes=2).problems)
    lines = table.splitlines()
    assert "| problem" in lines[0] and len(lines) == 2 + 6
    order = [next(k for k in ("NUM_CLASSES", "is used by", MISSING, "truncated", "lies outside")
                  if k in line) for line in lines[2:]]
    assert order == ["is used by", "is used by", "NUM_CLASSES", MISSING, "truncated", "lies outside"]
    assert "box [100, 100, 105, 105] lies outside its 40x32 image" in table


def test_problems_table_keeps_the_order_within_a_kind():
    rows = [Problem("b.jpg", 2, 7, "second"), Problem("a.jpg", 1, None, "gone", kind="image"),
            Problem("c.jpg", 3, 9, "third")]
    lines = problems_table(rows).splitlines()[2:]
    assert ["gone" in lines[0], "second" in lines[1], "third" in lines[2]] == [True] * 3
