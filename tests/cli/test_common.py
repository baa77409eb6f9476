"""What the tools share (``resnet_backbone.cli.common``). Both training tools refuse a malicious
``MODEL.WEIGHTS`` file (issue 8): run as a user would (a subprocess), each exits non-zero with a
message naming the file and the offending global, without a traceback (the common error
convention), and the payload never runs (its marker file is not written).

The loaders themselves are tested in ``tests/checkpoint/``; this checks that
``tools/train_cls.py`` and ``tools/train_det.py`` (through ``PaperDetectionCheckpointer``) read
weights only through them, for both a detectron2/MSRA-style ``.pkl`` and a ``torch.save`` ``.pth``.
"""
import os
import pickle

import pytest
import torch

from helpers import REPO, run_tool


def _cli_args(tool, shapes_coco):
    """The smallest runs that reach the weight loading: --eval-only on tiny data."""
    if tool == "train_cls":
        return ["--eval-only", "DATASETS.SYNTHETIC.NUM_TRAIN", "16", "DATASETS.SYNTHETIC.NUM_TEST",
                "8", "DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False"]
    json_file, image_root = shapes_coco  # not the demo, which first writes 400 images
    return ["--config-file", str(REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml"),
            "--dataset", "shapes_tiny", str(json_file), str(image_root), "--eval-only",
            "DATASETS.TRAIN", "('shapes_tiny',)", "DATASETS.TEST", "('shapes_tiny',)",
            "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]


class _RunsCode:
    """Unpickling it runs ``touch marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_weights(tmp_path, kind):
    marker = tmp_path / "PWNED"
    if kind == "pkl":  # detectron2 model-zoo layout, one entry replaced by the payload
        path = tmp_path / "model_final_f10217.pkl"
        with open(path, "wb") as f:
            pickle.dump({"model": {"backbone.res2.0.conv1.weight": _RunsCode(marker)},
                         "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f, 2)
    else:
        path = tmp_path / "model_final.pth"
        torch.save({"model": {"stem.conv1.weight": torch.zeros(1)}, "extra": _RunsCode(marker)},
                   path)
    return path, marker


@pytest.mark.parametrize("kind", ["pkl", "pth"])
@pytest.mark.parametrize("tool", ["train_cls", "train_det"])
def test_cli_refuses_malicious_weights(tmp_path, shapes_coco, tool, kind):
    weights, marker = _malicious_weights(tmp_path, kind)
    with open(weights, "rb") as f:  # control: an unrestricted load runs the payload
        pickle.load(f) if kind == "pkl" else torch.load(f, weights_only=False)
    assert marker.exists()
    marker.unlink()
    proc = run_tool(tool, *_cli_args(tool, shapes_coco), "MODEL.WEIGHTS", weights,
                    "OUTPUT_DIR", tmp_path / "out", cwd=REPO, timeout=240, threads=2)
    assert proc.returncode != 0, proc.stdout[-2000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert f"Refusing to load {weights}" in last_line and "posix.system" in last_line, \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists()
