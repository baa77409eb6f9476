"""tools/predict_cls.py (resnet-predict-cls) on a tiny trained run: results JSON, the table, a
corrupt file reported and skipped (exit status 1), bad input as one ``error:`` line (exit 2)."""
import json

from PIL import Image

from resnet_backbone.checkpoint import load_checkpoint_file, save_checkpoint_atomic
from resnet_backbone.classification.config import cfg_from_checkpoint
from resnet_backbone.cli import predict_cls
from resnet_backbone.data.synthetic import make_synthetic

from helpers import run_tool


def write_images(folder, count=3):
    """``count`` synthetic 32x32 PNGs (the images the runs of conftest.py train on)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (image, _) in enumerate(make_synthetic(count, seed=5)):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    return folder


def error_lines(err: str):
    return [line for line in err.splitlines() if line.strip()]


def test_a_corrupt_file_is_reported_and_skipped(runs, tmp_path, capsys, one_thread):
    folder = write_images(tmp_path / "photos")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "out" / "results.json"
    weights = str(runs[0] / "model_final.pth")
    assert predict_cls.main([str(folder), "--weights", weights, "--output", str(out), "--topk", "3",
                             "--batch-size", "2", "--no-progress"]) == 1
    stdout, stderr = capsys.readouterr()
    results = json.loads(out.read_text())
    assert [r["file"] for r in results["results"]] == [str(folder / f"img{i}.png") for i in range(3)]
    top = results["results"][0]["topk"]
    assert len(top) == 3 and set(top[0]) == {"class_index", "class_name", "score"}
    assert top[0]["class_name"] == f"class{top[0]['class_index']}" and top[0]["score"] >= top[1]["score"]
    assert results["skipped"] == [{"file": str(folder / "broken.jpg"),
                                   "reason": "not an image (PIL cannot identify its format)"}]
    assert f"skipped {folder / 'broken.jpg'}: not an image" in stderr
    assert "3 image(s) in" in stderr and "images/s" in stderr and "skipped 1 unreadable" in stderr
    assert "cifar_resnet20" in stdout and "top-1" in stdout and f"wrote {out}" in stdout


def test_bad_input_is_one_error_line_and_exit_status_2(runs, tmp_path, capsys, one_thread):
    folder = write_images(tmp_path / "photos", 1)
    weights = str(runs[0] / "model_final.pth")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    state = load_checkpoint_file(weights)
    cfg = cfg_from_checkpoint(state)
    cfg.MODEL.NAME = "cifar_resnet32"  # the file names another network than its weights
    state["cfg"] = cfg.dump()
    save_checkpoint_atomic(state, tmp_path / "other.pth")
    for argv, message in [
            ([str(tmp_path / "empty"), "--weights", weights], "a folder with no images"),
            ([str(folder), "--weights", str(tmp_path / "other.pth")], "do not fit cifar_resnet32"),
            ([str(folder), "--weights", weights, "--mode", "five_crop"], "mode 'five_crop' is not valid"),
            ([str(folder), "--weights", str(tmp_path / "none.pth")], "no such file")]:
        assert predict_cls.main(argv + ["--no-progress"]) == 2, argv
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


def test_tool_as_a_user_runs_it(runs, tmp_path):
    write_images(tmp_path / "photos", 2)
    done = run_tool("predict_cls", "photos/*.png", "--weights", runs[0] / "model_final.pth",
                    "--mode", "ten_crop", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "photos/img1.png" in done.stdout and "images/s" in done.stdout
