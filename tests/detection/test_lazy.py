"""The LazyConfig (``.py``) twins of the paper's detection configs (``configs/detection/*.py``):
each loads, builds and detects; each builds the model, solver and data of its YAML, checked
module by module; and ``train_det`` trains, checkpoints, evaluates and resumes (bit for bit)
with one."""
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.config import instantiate
from detectron2.data import DatasetMapper
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from omegaconf import OmegaConf
from torch import nn

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.cli import train_det
from resnet_backbone.data.synthetic import write_shapes_coco
from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.lazy import build_model as build_lazy_model
from resnet_backbone.detection.lazy import load_config, loader_datasets
from resnet_backbone.recipes import get_config_file
from test_detection_configs import damp_residual_branches_

from helpers import TOOL_THREADS

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs" / "detection"
LAZY = sorted(CONFIG_DIR.glob("*.py"))
TOOL = str(ROOT / "tools" / "train_det.py")
#: Small inputs for a quick forward pass; the networks stay as configured.
SMALL = ["train.device=cpu", "train.init_checkpoint=",
         "model.proposal_generator.pre_nms_topk=[300,300]",
         "model.proposal_generator.post_nms_topk=[32,16]",
         "dataloader.test.mapper.augmentations.0.short_edge_length=96",
         "dataloader.test.mapper.augmentations.0.max_size=120"]
#: The R-101 C4 row as a ResNet-18 with BN trained from scratch on 128-pixel images: seconds
#: per iteration on a CPU.
TINY_R18 = ["model.backbone.depth=18", "model.roi_heads.res5.depth=18",
            "model.backbone.norm=BN", "model.roi_heads.res5.norm=BN", "model.backbone.freeze_at=0",
            "model.proposal_generator.head.in_channels=256",
            "model.roi_heads.box_predictor.input_shape.channels=512",
            "model.roi_heads.num_classes=3", "model.roi_heads.batch_size_per_image=16",
            "model.proposal_generator.anchor_generator.sizes=[[32,64,128]]",
            "model.proposal_generator.pre_nms_topk=[300,300]",
            "model.proposal_generator.post_nms_topk=[32,32]",
            "dataloader.train.mapper.augmentations.0.short_edge_length=[128]",
            "dataloader.train.mapper.augmentations.0.max_size=160",
            "dataloader.test.mapper.augmentations.0.short_edge_length=128",
            "dataloader.test.mapper.augmentations.0.max_size=160",
            "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
            "train.init_checkpoint=", "train.seed=0", "train.device=cpu"]


def test_every_row_has_a_lazyconfig_and_none_is_a_package():
    rows = [f"faster_rcnn_{net}_{data}" for net in ("R_101_C4", "VGG16")
            for data in ("coco2014", "voc0712")]
    appendix = [f"faster_rcnn_R_101_C4_{row}" for row in (
        "coco2014_refine", "coco2014_refine_context", "coco2014_refine_context_multiscale",
        "voc0712_plus3")]
    assert [p.stem for p in LAZY] == sorted(rows + appendix)
    for path in LAZY:
        assert (CONFIG_DIR / f"{path.stem}.yaml").is_file()
        assert path.read_text().startswith("# Table "), "header comment: the table row"
    # loaded by path with LazyConfig.load, never imported as modules of resnet_backbone.configs
    assert not list(CONFIG_DIR.rglob("__init__.py"))
    assert get_config_file(f"detection/{LAZY[0].name}") == str(LAZY[0])
    with pytest.raises(FileNotFoundError, match=r"faster_rcnn_VGG16_voc0712\.py") as e:
        get_config_file("detection/missing.py")
    assert "common/" not in str(e.value)


@pytest.mark.parametrize("config", LAZY, ids=lambda p: p.stem)
def test_lazyconfig_builds_and_detects_on_cpu(config, shapes_coco):
    cfg = load_config(str(config), SMALL)
    torch.manual_seed(0)
    model = build_lazy_model(cfg).eval()
    damp_residual_branches_(model)
    assert str(model.pixel_mean.device) == "cpu"
    json_file, image_root = shapes_coco
    image = json.loads(Path(json_file).read_text())["images"][0]
    record = {"file_name": os.path.join(image_root, image["file_name"]), "image_id": image["id"],
              "height": image["height"], "width": image["width"]}
    sample = instantiate(cfg.dataloader.test.mapper)(record)
    assert sample["image"].shape[1:] == (96, 120)  # the test resize, in the model's format
    with torch.no_grad():
        instances = model([sample])[0]["instances"]
    assert instances.image_size == (image["height"], image["width"])
    assert {"pred_boxes", "scores", "pred_classes"} <= set(instances.get_fields())
    assert len(instances) <= cfg.model.roi_heads.box_predictor.test_topk_per_image


def describe(obj, seen=None):
    """A module tree as plain data: each module's type, its own attributes (options such as
    thresholds, top-k, strides, matchers and box transforms), parameter shapes and
    requires_grad, buffer values (small ones) or shapes."""
    seen = set() if seen is None else seen
    if OmegaConf.is_config(obj):  # instantiate keeps lists as ListConfig: the same values
        obj = OmegaConf.to_container(obj)
    if isinstance(obj, torch.Tensor):
        return ("tensor", tuple(obj.shape), obj.tolist() if obj.numel() <= 64 else None)
    if isinstance(obj, nn.Module):
        if id(obj) in seen:
            return ("seen", type(obj).__name__)
        seen.add(id(obj))
        return {"type": type(obj).__name__,
                "attrs": {k: describe(v, seen) for k, v in vars(obj).items()
                          if k not in _MODULE_BASE},
                "params": {k: (tuple(p.shape), p.requires_grad)
                           for k, p in obj._parameters.items() if p is not None},
                "buffers": {k: describe(b, seen) for k, b in obj._buffers.items() if b is not None},
                "children": {k: describe(m, seen) for k, m in obj.named_children()}}
    if isinstance(obj, (list, tuple)):
        return tuple(describe(v, seen) for v in obj)
    if isinstance(obj, dict):
        return {str(k): describe(v, seen) for k, v in obj.items()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "__dict__") and not isinstance(obj, type) and not inspect.isroutine(obj) \
            and id(obj) not in seen:  # Matcher, Box2BoxTransform, ...
        seen.add(id(obj))
        return {"type": type(obj).__name__, "attrs": describe(dict(vars(obj)), seen)}
    return type(obj).__name__


_MODULE_BASE = set(vars(nn.Module()))


def differences(a, b, path="model"):
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in {'yaml' if k in a else 'lazy'}" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: yaml {a!r} != lazy {b!r}"]


def augmentations(mapper):
    return [(type(a).__name__, {k: tuple(v) if isinstance(v, (list, tuple)) else v
                                for k, v in vars(a).items()})
            for a in mapper.augmentations.augs]


@pytest.mark.parametrize("config", LAZY, ids=lambda p: p.stem)
def test_lazyconfig_is_its_yaml(config):
    """The same model (every module, option and parameter shape), solver and data."""
    yaml_cfg = get_detection_cfg(str(config.with_suffix(".yaml")), ["MODEL.DEVICE", "cpu"])
    cfg = load_config(str(config))
    yaml_model, lazy_model = build_model(yaml_cfg), instantiate(cfg.model)

    # parameters and buffers, names and shapes (the checkpoints' keys)
    assert ({k: v.shape for k, v in yaml_model.state_dict().items()}
            == {k: v.shape for k, v in lazy_model.state_dict().items()})
    # the key hyper-parameters, read from the built modules
    y_rpn, l_rpn = yaml_model.proposal_generator, lazy_model.proposal_generator
    assert [b.tolist() for b in l_rpn.anchor_generator.cell_anchors] == \
        [b.tolist() for b in y_rpn.anchor_generator.cell_anchors]  # sizes x aspect ratios
    assert l_rpn.anchor_generator.strides == y_rpn.anchor_generator.strides == [16]
    assert l_rpn.anchor_matcher.thresholds == y_rpn.anchor_matcher.thresholds
    assert l_rpn.anchor_matcher.labels == y_rpn.anchor_matcher.labels
    for key in ("pre_nms_topk", "post_nms_topk", "nms_thresh", "batch_size_per_image",
                "positive_fraction", "anchor_boundary_thresh", "smooth_l1_beta", "min_box_size"):
        assert getattr(l_rpn, key) == getattr(y_rpn, key), key
    assert l_rpn.post_nms_topk[False] == 300
    y_roi, l_roi = yaml_model.roi_heads, lazy_model.roi_heads
    assert type(l_roi) is type(y_roi)
    for key in ("num_classes", "batch_size_per_image", "positive_fraction", "proposal_append_gt"):
        assert getattr(l_roi, key) == getattr(y_roi, key), key
    assert l_roi.proposal_matcher.thresholds == y_roi.proposal_matcher.thresholds
    y_pool = getattr(y_roi, "pooler", None) or y_roi.box_pooler
    l_pool = getattr(l_roi, "pooler", None) or l_roi.box_pooler
    assert [(type(p).__name__, p.output_size, p.spatial_scale) for p in l_pool.level_poolers] == \
        [(type(p).__name__, p.output_size, p.spatial_scale) for p in y_pool.level_poolers]
    pooler = cfg.model.roi_heads.get("pooler") or cfg.model.roi_heads.box_pooler
    box_head = yaml_cfg.MODEL.ROI_BOX_HEAD  # (RoIPool keeps no sampling ratio: the configs')
    assert (pooler.pooler_type, pooler.output_size, pooler.sampling_ratio) == \
        (box_head.POOLER_TYPE, box_head.POOLER_RESOLUTION, box_head.POOLER_SAMPLING_RATIO)
    for key in ("test_score_thresh", "test_nms_thresh", "test_topk_per_image", "smooth_l1_beta"):
        assert getattr(l_roi.box_predictor, key) == getattr(y_roi.box_predictor, key), key
    assert l_roi.box_predictor.box2box_transform.weights == \
        tuple(y_roi.box_predictor.box2box_transform.weights)
    assert pixels_and_format(lazy_model) == pixels_and_format(yaml_model)
    # ... and everything else, module by module
    assert differences(describe(yaml_model), describe(lazy_model)) == []

    # solver: the same parameter groups (lr and weight decay of each parameter), schedule
    cfg.optimizer.params.model = lazy_model
    yaml_opt, lazy_opt = build_optimizer(yaml_cfg, yaml_model), instantiate(cfg.optimizer)
    assert param_groups(yaml_opt, yaml_model) == param_groups(lazy_opt, lazy_model)
    assert type(lazy_opt) is type(yaml_opt)
    for key in ("momentum", "nesterov", "weight_decay", "lr"):
        assert lazy_opt.defaults[key] == yaml_opt.defaults[key], key
    s = yaml_cfg.SOLVER
    yaml_multiplier = build_lr_scheduler(yaml_cfg, yaml_opt)._multiplier
    lazy_multiplier = instantiate(cfg.lr_multiplier)
    for it in (0, 1, s.STEPS[0] - 1, s.STEPS[0], s.MAX_ITER - 1):
        assert lazy_multiplier(it / cfg.train.max_iter) == yaml_multiplier(it / s.MAX_ITER), it
    assert (cfg.train.max_iter, cfg.train.checkpointer.period, cfg.train.eval_period) == \
        (s.MAX_ITER, s.CHECKPOINT_PERIOD, yaml_cfg.TEST.EVAL_PERIOD)
    assert cfg.train.init_checkpoint == yaml_cfg.MODEL.WEIGHTS
    assert (cfg.train.amp.enabled, cfg.train.seed, cfg.train.output_dir) == \
        (s.AMP.ENABLED, yaml_cfg.SEED, yaml_cfg.OUTPUT_DIR)

    # data: datasets, batch, loader options, augmentations and image format
    train = cfg.dataloader.train
    assert loader_datasets(train) == list(yaml_cfg.DATASETS.TRAIN)
    assert loader_datasets(cfg.dataloader.test) == list(yaml_cfg.DATASETS.TEST)
    assert cfg.dataloader.evaluator.dataset_name == yaml_cfg.DATASETS.TEST[0]
    assert train.total_batch_size == s.IMS_PER_BATCH
    assert (train.num_workers, train.aspect_ratio_grouping, train.dataset.filter_empty) == \
        (yaml_cfg.DATALOADER.NUM_WORKERS, yaml_cfg.DATALOADER.ASPECT_RATIO_GROUPING,
         yaml_cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    assert cfg.dataloader.strict == yaml_cfg.DATASETS.STRICT
    for is_train, node in ((True, train.mapper), (False, cfg.dataloader.test.mapper)):
        yaml_mapper, lazy_mapper = DatasetMapper(yaml_cfg, is_train), instantiate(node)
        assert augmentations(lazy_mapper) == augmentations(yaml_mapper)
        assert lazy_mapper.image_format == yaml_mapper.image_format == yaml_cfg.INPUT.FORMAT
        assert lazy_mapper.is_train == is_train and not lazy_mapper.use_instance_mask


def pixels_and_format(model):
    return (model.pixel_mean.flatten().tolist(), model.pixel_std.flatten().tolist(),
            model.input_format, model.backbone.size_divisibility)


def param_groups(optimizer, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: (g["lr"], g["weight_decay"])
            for g in optimizer.param_groups for p in g["params"]}


def test_lazyconfig_user_errors_are_one_line(capsys, tmp_path, shapes_coco):
    config = str(CONFIG_DIR / "faster_rcnn_R_101_C4_voc0712.py")
    for opts, message in [(["train.max_iters=3"], "train.max_iters: no such key; train has: amp"),
                          (["model.backbone.depht=50"], "PaperResNet takes no argument 'depht'"),
                          (["MODEL.WEIGHTS", "x.pkl"], "overrides are key=value"),
                          (["train.max_iter=[1"], "bad override"),
                          (["--dataset", "lazy_err", *shapes_coco, "train.device=cpu",
                            "dataloader.train.dataset.names=lazy_err",
                            "dataloader.test.dataset.names=lazy_err", "train.init_checkpoint=",
                            f"train.output_dir={tmp_path}"],
                           "train.init_checkpoint is empty, but the backbone's norms are")]:
        assert train_det.main(["--config-file", config, *opts]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # (torch may warn before)
        assert err[-1].startswith("error: ") and message in err[-1], err
        assert not any(line.startswith(("Traceback", "error: ")) for line in err[:-1]), err
    # the widths a config writes out as numbers must agree
    cfg = load_config(config, ["train.device=cpu", "model.proposal_generator.head.num_anchors=12"])
    with pytest.raises(ValueError, match="num_anchors is 12 but the anchor generator makes 9"):
        build_lazy_model(cfg)


def test_lazyconfig_global_context_takes_twice_the_predictor_width():
    """The appendix's global context from keywords: the box predictor takes each region's res5
    feature and the whole image's, concatenated (2 x 512 for ResNet-18)."""
    config = str(CONFIG_DIR / "faster_rcnn_R_101_C4_voc0712.py")
    context = TINY_R18 + ["model.roi_heads.global_context=True"]
    model = build_lazy_model(load_config(config, context + [
        "model.roi_heads.box_predictor.input_shape.channels=1024"]))
    assert model.roi_heads.global_context
    assert model.roi_heads.box_predictor.cls_score.in_features == 1024
    with pytest.raises(ValueError, match="box predictor takes 512 channels; res5 gives 512 and "
                                         "global context doubles it"):
        build_lazy_model(load_config(config, context))


def test_lazyconfig_eval_only_refuses_a_box_predictor_the_weights_do_not_fill(capsys, tmp_path,
                                                                             shapes_coco):
    """As the YAML path: ``--eval-only`` with no weights, or with a baseline checkpoint under
    global context (a predictor of twice the inputs), would evaluate a random box predictor."""
    config = str(CONFIG_DIR / "faster_rcnn_R_101_C4_voc0712.py")
    torch.manual_seed(0)
    baseline = tmp_path / "baseline.pth"
    torch.save({"model": build_lazy_model(load_config(config, TINY_R18)).state_dict()}, baseline)
    args = ["--config-file", config, "--eval-only", "--dataset", "lazy_eval", *shapes_coco,
            *TINY_R18, "dataloader.test.dataset.names=lazy_eval", f"train.output_dir={tmp_path}"]
    context = ["model.roi_heads.global_context=True",
               "model.roi_heads.box_predictor.input_shape.channels=1024"]
    for opts, message in [([], "MODEL.WEIGHTS empty would evaluate a random detector"),
                          ([f"train.init_checkpoint={baseline}", *context],
                           f"--eval-only: {baseline} has no weights of this model's box predictor")]:
        assert train_det.main([*args, *opts]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], err[-1]


def run_tool(*args):
    proc = subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": str(TOOL_THREADS)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_det_trains_evaluates_and_resumes_a_lazyconfig(tmp_path, shapes_coco):
    """4 iterations (checkpoints every 2) and evaluation on held-out images; then the run cut
    back to its first checkpoint and resumed ends with the same weights, bit for bit."""
    val = write_shapes_coco(tmp_path / "val", 4, image_size=(128, 160), num_classes=3, seed=7)
    out = tmp_path / "out"
    args = ["--config-file", CONFIG_DIR / "faster_rcnn_R_101_C4_voc0712.py",
            "--dataset", "t_train", *shapes_coco, "--dataset", "t_val", *val, *TINY_R18,
            "dataloader.train.dataset.names=t_train", "dataloader.test.dataset.names=t_val",
            "train.max_iter=4", "train.checkpointer.period=2", "train.log_period=1",
            f"train.output_dir={out}"]
    log = run_tool(*args)
    assert sorted(p.name for p in out.glob("*.pth")) == \
        ["model_0000001.pth", "model_0000003.pth", "model_final.pth"]
    assert "Paper metric: t_val: COCO mAP@.5" in log
    results = json.loads((out / "results.json").read_text())["results"]
    assert "AP50" in results["t_val"]["bbox"]
    assert (out / "config.yaml").is_file() and list(out.glob("events.out.tfevents.*"))
    final = load_checkpoint_file(str(out / "model_final.pth"))
    assert final["trainer"]["iteration"] == 3 and "optimizer" in final["trainer"]
    logged = (out / "metrics.json").read_text()

    # a run that stopped after its first checkpoint, resumed
    (out / "model_0000003.pth").unlink()
    (out / "model_final.pth").unlink()
    (out / "last_checkpoint").write_text("model_0000001.pth")
    log = run_tool("--resume", *args)
    assert "Starting training from iteration 2" in log
    resumed = load_checkpoint_file(str(out / "model_final.pth"))
    assert resumed["trainer"]["run_seed"] == final["trainer"]["run_seed"]
    assert set(resumed["model"]) == set(final["model"])
    for key, value in final["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    # metrics.json cut back to the checkpoint, then appended: each iteration once, as before
    iterations = [json.loads(line)["iteration"]
                  for line in (out / "metrics.json").read_text().splitlines()]
    assert iterations[:2] == [0, 1] and iterations == [json.loads(line)["iteration"]
                                                       for line in logged.splitlines()]
