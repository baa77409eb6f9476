"""The environment works: the package is installed (it imports from any directory) and
detectron2 imports, a detectron2 Faster R-CNN builds and takes a real training step on CPU on
synthetic COCO-format data, and the set-up script stops on a failing install step."""
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_package_is_installed_not_just_on_the_path():
    """``import resnet_backbone`` works from any directory with this interpreter (the editable
    install of ``make env``), and finds this checkout."""
    proc = subprocess.run([sys.executable, "-c", "import resnet_backbone; print(resnet_backbone.__file__)"],
                          cwd="/", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).resolve().is_relative_to(REPO.resolve()), proc.stdout


def test_setup_stops_with_pips_error_on_a_broken_requirement(tmp_path):
    """A failing install step stops ``scripts/setup_env.sh`` (hence ``make test``) with pip's own
    message and a non-zero status, and leaves no half-built cache and no "ready" stamp."""
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    for name in ("setup.py", "scripts/setup_env.sh", "scripts/install_detectron2.py"):
        shutil.copy(REPO / name, clone / name)
    (clone / "requirements.txt").write_text("tqdm==999.0.0\n")  # no such release
    base_python = getattr(sys, "_base_executable", sys.executable)  # an interpreter without detectron2
    proc = subprocess.run(["bash", "scripts/setup_env.sh"], cwd=clone, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHON": base_python,
                                            "RESNET_BACKBONE_CACHE": str(tmp_path / "cache")})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "tqdm==999.0.0" in out and "[setup_env] error: this step failed" in out, out[-3000:]
    assert "ready" not in proc.stdout
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # the partial install was removed
    assert not list(clone.glob(".venv/.ready-*"))


def test_package_imports():
    import resnet_backbone

    assert resnet_backbone.__version__
    assert "resnet50" in resnet_backbone.list_models()


def test_detectron2_imports_with_shared_public_api():
    from detectron2.config import CfgNode  # noqa: F401
    from detectron2.engine import DefaultTrainer  # noqa: F401
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator  # noqa: F401
    from detectron2.layers import CNNBlockBase, FrozenBatchNorm2d, ShapeSpec, get_norm  # noqa: F401
    from detectron2.modeling import BACKBONE_REGISTRY, Backbone  # noqa: F401


def test_missing_compiled_ops_fail_clearly():
    """A pure-Python detectron2 build says what is missing and how to get it."""
    c_ops = importlib.import_module("detectron2._C")
    if not getattr(c_ops, "PURE_PYTHON_BUILD", False):
        pytest.skip("detectron2 has its compiled ops (built from source)")
    with pytest.raises(AttributeError, match="install detectron2 from source"):
        c_ops.deform_conv_forward  # noqa: B018


def test_detectron2_faster_rcnn_trains_one_step_on_cpu(shapes_coco):
    from detectron2.config import get_cfg
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
    from detectron2.data.datasets import register_coco_instances
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    json_file, image_root = shapes_coco
    name = "foundation_shapes_train"
    if name not in DatasetCatalog.list():
        register_coco_instances(name, {}, json_file, image_root)
    DatasetCatalog.get(name)  # loading the json sets thing_classes
    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.RESNETS.DEPTH = 50
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(MetadataCatalog.get(name).thing_classes)
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.DATASETS.TRAIN = (name,)
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
    cfg.INPUT.MAX_SIZE_TRAIN = 160
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    batch = next(iter(build_detection_train_loader(cfg)))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    with EventStorage(0):
        losses = model(batch)
    assert {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    changed = [k for k, v in model.named_parameters() if v.requires_grad and not torch.equal(v, before[k])]
    assert changed, "one SGD step changed no parameter"
