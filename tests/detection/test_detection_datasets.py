"""``resnet_backbone.detection.datasets.validate_datasets``: what a job does with what the check
finds, before step one: one table, then a one-line ``DatasetError`` or a skip report. Tiny COCO
(JPEG) and VOC datasets in the real formats; the function is called directly (no training)."""
import json
import logging
import os
from pathlib import Path

import pytest

from test_detection_validation import rewrite, truncate, write_coco_jpegs
from resnet_backbone.detection.datasets import register_coco_dataset, validate_datasets
from resnet_backbone.detection.validation import MISSING, DatasetError


@pytest.fixture
def job(tmp_path, monkeypatch, caplog):
    """(register(name, n=4, num_classes=2) -> (json, root, data), validate(**kw), log text):
    the image-check cache in tmp_path, the datasets removed from detectron2's catalogs after."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    caplog.set_level(logging.INFO, logger="detectron2.resnet_backbone")
    # caplog's handler on the logger itself: once a test of this process has run detectron2's
    # setup_logger, the "detectron2" logger no longer propagates to the root, where caplog listens
    logger = logging.getLogger("detectron2.resnet_backbone")
    logger.addHandler(caplog.handler)
    names = []

    def register(name, n=4, num_classes=2):
        json_file, root, data = write_coco_jpegs(tmp_path / name, n, num_classes)
        register_coco_dataset(name, json_file, root)
        names.append(name)
        return json_file, root, data

    def validate(train=(), test=(), **kw):
        kw = {"strict": False, "output_dir": str(tmp_path / "out"), **kw}
        return validate_datasets(list(train), list(test), **kw)

    yield register, validate, lambda: caplog.text
    logger.removeHandler(caplog.handler)
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def one_line_error(call) -> str:
    with pytest.raises(DatasetError) as e:
        call()
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_missing_training_image_is_an_error_or_left_out_with_skip_corrupt(job, tmp_path):
    register, validate, log = job
    json_file, root, data = register("vd_missing")
    gone = os.path.join(root, "000000000002.jpg")
    os.remove(gone)
    assert one_line_error(lambda: validate(["vd_missing"])) == (
        f"dataset 'vd_missing' (the table above): 1 of the 4 images of training set 'vd_missing' "
        f"is missing or unreadable: {gone} ({MISSING}); restore them, or set "
        "DATALOADER.SKIP_CORRUPT True to train without them")
    assert f"| {gone} |" in log()  # the table came first

    from detectron2.data import DatasetCatalog
    validate(["vd_missing"], skip_corrupt=True)
    assert (f"Dataset 'vd_missing': 1 of its 4 images left out of training, missing or unreadable "
            f"(DATALOADER.SKIP_CORRUPT True), with their annotations: {gone} ({MISSING}).") in log()
    cleaned = json.loads((tmp_path / "out" / "datasets" / "vd_missing.json").read_text())
    assert [i["id"] for i in cleaned["images"]] == [1, 3, 4]
    assert [a["image_id"] for a in cleaned["annotations"]] == [1, 3, 4]
    assert [r["image_id"] for r in DatasetCatalog.get("vd_missing")] == [1, 3, 4]


def test_a_truncated_training_image_is_an_error_or_left_out_with_skip_corrupt(job):
    register, validate, log = job
    _, root, _ = register("vd_cut")
    cut = str(truncate(Path(root) / "000000000004.jpg"))
    text = one_line_error(lambda: validate(["vd_cut"]))
    assert f"{cut} (truncated image file)" in text and "DATALOADER.SKIP_CORRUPT True" in text

    from detectron2.data import DatasetCatalog
    validate(["vd_cut"], skip_corrupt=True)
    assert [r["image_id"] for r in DatasetCatalog.get("vd_cut")] == [1, 2, 3]
    assert "1 of its 4 images left out of training" in log()


def test_a_bad_test_image_is_an_error_even_with_skip_corrupt(job):
    register, validate, _ = job
    json_file, root, _ = register("vd_test")
    register("vd_train")
    gone = os.path.join(root, "000000000001.jpg")
    os.remove(gone)
    text = one_line_error(lambda: validate(["vd_train"], ["vd_test"], skip_corrupt=True))
    assert text == (f"dataset 'vd_test' (the table above): 1 of the 4 images of test set 'vd_test' "
                    f"is missing or unreadable: {gone} ({MISSING}); a test set is never changed: "
                    f"restore the files, or remove those images from {json_file}")


def test_repeated_ids_and_too_few_classes_are_errors_in_one_line(job):
    register, validate, log = job
    json_file, root, data = register("vd_dup", num_classes=3)
    data["images"][1]["id"] = 1
    rewrite(json_file, data)
    text = one_line_error(lambda: validate(["vd_dup"], num_classes=2, skip_corrupt=True))
    assert text.startswith(f"dataset 'vd_dup' (the table above): {json_file} has 1 image id "
                           "used by more than one 'images' entry")
    assert "(id 1: 000000000001.jpg, 000000000002.jpg)" in text
    assert text.endswith("; " + f"{json_file} has 3 categories but MODEL.ROI_HEADS.NUM_CLASSES is "
                         "2: 'class2' would be trained as background; set "
                         "MODEL.ROI_HEADS.NUM_CLASSES 3")
    # the table: both entries of id 1, the categories, and the box of image 2 (now without
    # an 'images' entry)
    assert "Dataset 'vd_dup': 4 problems:" in log() and "image id 2 is not in 'images'" in log()


def test_detectron2_itself_merges_repeated_image_ids_and_asserts_on_annotation_ids(tmp_path):
    """Why both are errors: what detectron2's loader does with them."""
    from detectron2.data.datasets import load_coco_json

    json_file, root, data = write_coco_jpegs(tmp_path / "d2", 3)
    data["images"][1]["id"] = data["annotations"][1]["image_id"] = 1  # two images with id 1
    rewrite(json_file, data)
    records = load_coco_json(json_file, root)
    files = [os.path.basename(r["file_name"]) for r in records]
    assert files == ["000000000002.jpg", "000000000003.jpg"]  # 000000000001.jpg is gone ...
    assert len(records[0]["annotations"]) == 2  # ... and its box is on another image
    data["images"][1]["id"] = data["annotations"][1]["image_id"] = 2
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    rewrite(json_file, data)
    with pytest.raises(AssertionError, match="not unique"):
        load_coco_json(json_file, root)


def test_voc_training_image_truncated_is_an_error_or_left_out(job, tmp_path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc
    from resnet_backbone.data.synthetic import write_shapes_voc

    _, validate, log = job
    voc = write_shapes_voc(tmp_path / "VOC2007", 3, split="trainval", image_size=(32, 40),
                           num_classes=3, seed=2)
    register_pascal_voc("vd_voc", voc["dirname"], "trainval", 2007, voc["class_names"])
    try:
        first = sorted((Path(voc["dirname"]) / "JPEGImages").iterdir())[0]
        truncate(first)
        text = one_line_error(lambda: validate(["vd_voc"], num_classes=3))
        assert f"{first} (truncated image file)" in text
        assert "3 categories but" in one_line_error(lambda: validate(["vd_voc"], num_classes=2))
        validate(["vd_voc"], num_classes=3, skip_corrupt=True)
        assert len(DatasetCatalog.get("vd_voc")) == 2
        assert "1 of its 3 images left out of training" in log()
    finally:
        DatasetCatalog.remove("vd_voc")
        MetadataCatalog.remove("vd_voc")


# --- the tool passes the config through: NUM_CLASSES and SKIP_CORRUPT reach the check -------------
# ``train_det.main`` in this process, a YAML and a LazyConfig; each stops in the dataset check,
# before a model is built (each well under a second). Should a job get past the check (the
# wiring broken), it fails in seconds too: the LazyConfig at weights that do not exist, the
# YAML (which checks MODEL.WEIGHTS before the datasets) after one iteration on 128-px images.

ROOT = Path(__file__).resolve().parents[2]
YAML = str(ROOT / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml")
LAZY = str(ROOT / "configs" / "detection" / "faster_rcnn_R_101_C4_voc0712.py")
NO_WEIGHTS = "/nonexistent/no_weights.pth"
ONE_STEP = ["SOLVER.MAX_ITER", "1", "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "0",
            "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN",
            "160", "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160"]


@pytest.fixture
def tool(tmp_path, monkeypatch, capsys):
    """(dataset(name, n=4) -> (json, root, args of --dataset), run(*argv) -> (rc, the stderr
    lines)): COCO datasets of 3 categories in tmp_path, removed from detectron2's catalogs
    after; the image-check cache in tmp_path."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from resnet_backbone.cli import train_det

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    names = []

    def dataset(name, n=4):
        json_file, root, _ = write_coco_jpegs(tmp_path / name, n, num_classes=3)
        names.append(name)
        return json_file, root, ["--dataset", name, json_file, root]

    def run(*argv):
        capsys.readouterr()
        rc = train_det.main([str(a) for a in argv])
        return rc, capsys.readouterr().err.strip().splitlines()

    yield dataset, run
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


def the_error(lines) -> str:
    """The one ``error:`` line of the tool's stderr (torch may warn before it)."""
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    assert not any(line.startswith("Traceback") for line in lines), lines
    return errors[0]


def test_tool_yaml_passes_num_classes_to_the_check(tool, tmp_path):
    dataset, run = tool
    json_file, _, registered = dataset("tool_yaml_nc")
    rc, err = run("--config-file", YAML, *registered, "MODEL.ROI_HEADS.NUM_CLASSES", "2",
                  *ONE_STEP, "DATASETS.TRAIN", "('tool_yaml_nc',)", "DATASETS.TEST",
                  "('tool_yaml_nc',)",
                  "OUTPUT_DIR", tmp_path / "out")
    line = the_error(err)
    assert rc == 2
    assert (f"{json_file} has 3 categories but MODEL.ROI_HEADS.NUM_CLASSES is 2: 'class2' would "
            "be trained as background; set MODEL.ROI_HEADS.NUM_CLASSES 3") in line, line


def test_tool_lazyconfig_passes_num_classes_to_the_check(tool, tmp_path):
    dataset, run = tool
    json_file, _, registered = dataset("tool_lazy_nc")
    rc, err = run("--config-file", LAZY, *registered, "train.device=cpu",
                  "model.roi_heads.num_classes=2",
                  f"train.init_checkpoint={NO_WEIGHTS}",
                  "dataloader.train.dataset.names=tool_lazy_nc",
                  "dataloader.test.dataset.names=tool_lazy_nc",
                  f"train.output_dir={tmp_path / 'out'}")
    line = the_error(err)
    assert rc == 2
    assert (f"{json_file} has 3 categories but model.roi_heads.num_classes is 2: 'class2' would "
            "be trained as background; set model.roi_heads.num_classes=3") in line, line
    assert "NUM_CLASSES" not in line


def test_tool_yaml_passes_skip_corrupt_to_the_check(tool, tmp_path):
    dataset, run = tool
    _, train_root, train = dataset("tool_yaml_train")
    test_json, test_root, test = dataset("tool_yaml_test")
    gone = os.path.join(train_root, "000000000002.jpg")
    os.remove(gone)
    args = ["--config-file", YAML, *train, *test, *ONE_STEP, "DATASETS.TRAIN",
            "('tool_yaml_train',)",
            "DATASETS.TEST", "('tool_yaml_test',)", "OUTPUT_DIR", tmp_path / "out"]
    rc, err = run(*args)
    assert rc == 2 and the_error(err) == (
        f"error: dataset 'tool_yaml_train' (the table above): 1 of the 4 images of training set "
        f"'tool_yaml_train' is missing or unreadable: {gone} ({MISSING}); restore them, or set "
        "DATALOADER.SKIP_CORRUPT True to train without them")
    # with SKIP_CORRUPT the training set passes; the test set's missing image (an error even
    # so) then stops the job before training
    test_gone = os.path.join(test_root, "000000000003.jpg")
    os.remove(test_gone)
    rc, err = run(*args, "DATALOADER.SKIP_CORRUPT", "True")
    assert rc == 2 and the_error(err) == (
        f"error: dataset 'tool_yaml_test' (the table above): 1 of the 4 images of test set "
        f"'tool_yaml_test' is missing or unreadable: {test_gone} ({MISSING}); a test set is never "
        f"changed: restore the files, or remove those images from {test_json}")
    assert (tmp_path / "out" / "datasets" / "tool_yaml_train.json").is_file()  # cleaned copy
