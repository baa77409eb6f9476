"""``resnet-predict-det`` and ``resnet_backbone.detection.Predictor`` on the short demo's trained
detector, as a user runs them on a folder of their own pictures: COCO results JSON that
pycocotools reads, drawn pictures, an unreadable file named and skipped (exit status 1), EXIF
orientation applied, detectron2's ``DefaultPredictor``'s detections, and the same boxes again
from the ONNX export in ONNX Runtime."""
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from resnet_backbone.cli.export_model import main as export_model
from resnet_backbone.cli.predict_det import main as predict_det

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")),
    reason="the [onnx] extra (onnx, onnxruntime) is not installed")
#: EXIF orientation 6: the stored pixels are the picture turned 90 degrees counter-clockwise
#: (a phone held upright); a viewer turns them back clockwise.
ORIENTATION, ROTATED_CW = 0x0112, 6


@pytest.fixture(scope="module")
def photos(short_demo, tmp_path_factory):
    """A user's folder: three held-out demo images (PNG; one in a subfolder, stored sideways
    with an EXIF orientation tag), and a truncated JPEG."""
    out, _ = short_demo
    val = sorted((out / "data" / "shapes_demo_val" / "images").iterdir())[:3]
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    shutil.copy(val[0], root / "a.png")
    shutil.copy(val[1], root / "b.png")
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATED_CW
    Image.open(val[2]).transpose(Image.ROTATE_90).save(root / "sub" / "c_sideways.png", exif=exif)
    shutil.copy(val[2], root / "c_upright.png")
    Image.open(val[0]).convert("RGB").save(root / "whole.jpg", quality=95)
    (root / "broken.jpg").write_bytes((root / "whole.jpg").read_bytes()[:400])
    (root / "whole.jpg").unlink()
    return root


def read_results(folder: Path):
    """{file name: [(category_id, bbox, score), ...]} of a predict-det output folder, checked
    to load in pycocotools as COCO results."""
    from pycocotools.coco import COCO
    coco = COCO(str(folder / "coco_images.json"))
    loaded = coco.loadRes(str(folder / "coco_results.json"))
    by_file = {Path(im["file_name"]).name: [] for im in coco.dataset["images"]}
    for ann in loaded.dataset["annotations"]:
        name = Path(coco.imgs[ann["image_id"]]["file_name"]).name
        by_file[name].append((ann["category_id"], ann["bbox"], ann["score"]))
    return by_file, coco


@pytest.fixture(scope="module")
def pytorch_run(short_demo, photos, tmp_path_factory):
    out, _ = short_demo
    dest = tmp_path_factory.mktemp("predicted")
    status = predict_det([str(photos), "--weights", str(out / "model_final.pth"),
                          "--output-dir", str(dest), "--draw", "--no-progress"])
    return status, dest


def test_folder_to_coco_json_and_pictures(pytorch_run, capsys):
    status, dest = pytorch_run
    assert status == 1  # one unreadable file: the others' results are written
    by_file, coco = read_results(dest)
    assert sorted(by_file) == ["a.png", "b.png", "c_sideways.png", "c_upright.png"]
    assert [c["name"] for c in coco.dataset["categories"]] == ["circle", "square", "triangle"]
    # the trained detector finds objects: measured 10 detections on a, b, c (2026-12-05)
    assert sum(len(v) for v in by_file.values()) >= 4
    assert sorted(p.name for p in (dest / "vis").iterdir()) == \
        ["a.png", "b.png", "c_sideways.png", "c_upright.png"]
    # the sideways file, turned upright by its EXIF tag, is the upright picture
    assert by_file["c_sideways.png"] == by_file["c_upright.png"] and by_file["c_upright.png"]


def test_unreadable_file_named_with_its_reason_and_summarised(short_demo, photos, tmp_path, capsys):
    out, _ = short_demo
    status = predict_det([str(photos / "broken.jpg"), str(photos / "a.png"), "--weights",
                          str(out / "model_final.pth"), "--output-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 1
    assert f"skipped {photos / 'broken.jpg'}: truncated file" in captured.err
    assert "skipped 1 unreadable file(s)" in captured.err and "images/s" in captured.err


def test_predictor_gives_detectron2_default_predictors_detections(short_demo, photos, tmp_path):
    """The peer's own API on the same file: ``DefaultPredictor`` (reads BGR, resizes with
    ResizeShortestEdge, scales boxes back) and our ``Predictor`` agree, on a picture larger
    than the test size (resized down, boxes scaled back up)."""
    from detectron2.data.detection_utils import read_image
    from detectron2.engine import DefaultPredictor

    from resnet_backbone.detection import Predictor, get_detection_cfg
    out, _ = short_demo
    cfg = get_detection_cfg(str(out / "config.yaml"),
                            ["MODEL.WEIGHTS", str(out / "model_final.pth"), "MODEL.DEVICE", "cpu"])
    large = tmp_path / "large.png"
    with Image.open(photos / "b.png") as image:
        image.resize((image.width * 3 // 2, image.height * 3 // 2), Image.BICUBIC).save(large)
    theirs = DefaultPredictor(cfg)(read_image(str(large), format="BGR"))["instances"]
    ours = Predictor(str(out / "config.yaml"), str(out / "model_final.pth"))(str(large))
    assert ours.image_size == (240, 288)
    assert len(ours) == len(theirs) > 0
    assert np.allclose(ours.boxes, theirs.pred_boxes.tensor.numpy(), atol=1e-3)
    assert np.allclose(ours.scores, theirs.scores.numpy(), atol=1e-5)
    assert ours.class_names[0] in ("circle", "square", "triangle")


@needs_onnx
@pytest.mark.slow
def test_onnx_runtime_predicts_the_pytorch_boxes(short_demo, photos, pytorch_run, tmp_path, capsys):
    """Export (the class names and the input contract travel in the file), then predict again
    with ONNX Runtime: boxes within 1 px and scores within 1e-4 of PyTorch's (measured 0 px and
    1e-6 on the rounded JSON values, 2026-12-05)."""
    out, _ = short_demo
    assert export_model(["--config-file", str(out / "config.yaml"), "--weights",
                         str(out / "model_final.pth"), "--format", "onnx", "--image",
                         str(photos / "b.png"), "--output-dir", str(tmp_path)]) == 0
    onnx_file = tmp_path / f"{out.name}.onnx"
    assert onnx_file.is_file(), capsys.readouterr().out
    status = predict_det([str(photos), "--weights", str(onnx_file), "--output-dir",
                          str(tmp_path / "onnx"), "--no-progress"])
    assert status == 1
    expected, _ = read_results(pytorch_run[1])
    got, coco = read_results(tmp_path / "onnx")
    assert [c["name"] for c in coco.dataset["categories"]] == ["circle", "square", "triangle"]
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert len(got[name]) == len(expected[name]), name
        for (c1, box1, s1), (c2, box2, s2) in zip(sorted(expected[name], key=lambda d: -d[2]),
                                                  sorted(got[name], key=lambda d: -d[2])):
            assert c1 == c2 and abs(s1 - s2) <= 1e-4 and np.abs(np.subtract(box1, box2)).max() <= 1


def test_bad_input_is_one_error_line(short_demo, tmp_path, capsys):
    out, _ = short_demo
    weights = str(out / "model_final.pth")
    (tmp_path / "empty").mkdir()
    classifier = tmp_path / "resnet18.pth"  # an ImageNet classifier: no detector heads
    torch.save(torchvision.models.resnet18().state_dict(), classifier)
    cases = [([str(tmp_path / "empty"), "--weights", weights], "a folder with no images"),
             ([str(tmp_path / "nothing*.jpg"), "--weights", weights], "matches no image files"),
             ([str(out / "data"), "--weights", str(tmp_path / "none.pth")], "none.pth: no such file"),
             ([str(out / "data"), "--weights", weights, "--config-file", str(tmp_path / "c.yaml")],
              "c.yaml: no such file"),
             ([str(out / "data"), "--weights", str(classifier), "--config-file",
               str(out / "config.yaml")], "has no weights of this model's box predictor")]
    for argv, message in cases:
        assert predict_det(argv + ["--output-dir", str(tmp_path / "o")]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
