"""LazyConfig (``.py``) configs for ``resnet-train-det``, as detectron2's
``tools/lazyconfig_train_net.py`` runs them, and the builders those configs name.

    resnet-train-det --config-file configs/detection/faster_rcnn_R_101_C4_voc0712.py \\
        [--resume] [--eval-only] [--num-gpus N] [--dataset NAME JSON IMAGE_ROOT] key=value ...

A config defines ``model``, ``dataloader`` (``train``, ``test``, ``evaluator``; ``strict``,
``skip_corrupt``),
``optimizer``, ``lr_multiplier`` and ``train`` (``output_dir``, ``init_checkpoint``,
``max_iter``, ``amp.enabled``, ``ddp``, ``checkpointer``, ``eval_period``, ``log_period``,
``device``, ``seed``). Overrides are ``key=value`` (``LazyConfig.apply_overrides``); a key that
is neither in the config nor an argument of the call it would go to is an error. This module
loads and checks the config and turns it into the inputs of the one engine (``.engine``: the
training loop of ``lazyconfig_train_net.py``, evaluation, resume, divergence, set-up), which the
YAML path (``.trainer``) shares; ``do_train`` / ``do_test`` / ``setup`` / ``register`` /
``train_and_evaluate`` are those adapters.

What the ``.py`` path guarantees, as the YAML path (README, "Checkpoints you can trust"):

* loading through ``PaperDetectionCheckpointer`` (no plain ``torch.load``/``pickle.load``; MSRA,
  torchvision and detectron2 weights mapped), atomic checkpoints, ``--resume`` from the newest
  readable one, with the optimizer state;
* exact resume when ``dataloader.train`` is ``build_resumable_train_loader`` (the configs'
  choice): batches, augmentation and each step's RNGs are functions of (seed, iteration,
  process), and the run's seed is stored in the checkpoints; ``metrics.json`` is cut back to
  the checkpoint on resume and appended in whole lines;
* ``train.output_dir`` checked, datasets checked and validated before the job
  (``dataloader.strict``: the YAML's ``DATASETS.STRICT``), ``--dataset`` registration, a
  FrozenBN backbone without weights or statistics stopped (``check_frozen_norms``), a loss that
  turns NaN/inf reported in one line, the evaluator following the dataset and the paper's
  metric line, ``results.json``; ``--num-gpus N`` through the YAML path's launcher (gloo on a
  CPU machine).

What it does not:

* the weights' metadata (``tools/export_backbone.py`` / ``train_cls`` checkpoints) is not
  applied to the config (the YAML path's ``apply_weights_meta``): set ``model.backbone.*``,
  ``model.roi_heads.res5.*``, ``model.input_format``, ``model.pixel_mean``/``pixel_std`` to
  match the weights yourself;
* a ``dataloader.train`` other than ``build_resumable_train_loader`` (e.g. detectron2's
  ``build_detection_train_loader``) restarts its data order on resume, as in detectron2;
* the test set is the one ``dataloader.test`` loader (one dataset per evaluation), not a list
  of datasets evaluated one by one.
"""
import inspect
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Union

from detectron2.config import LazyConfig, instantiate
from detectron2.solver import WarmupParamScheduler
from detectron2.utils.registry import locate
from fvcore.common.param_scheduler import MultiStepParamScheduler
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..config_files import check_config_path, python_config_error
from ..distributed import cpu_if_no_cuda, shared_random_seed, wrap_ddp
from ..fast import speed_up_strided_1x1
from .checkpoint import PaperDetectionCheckpointer
from .compat import numpy_compat
from .data import ResumableTrainLoader
from .engine import (DetectionEngine, SeededAMPTrainer, SeededSimpleTrainer, TrainJob, evaluate,
                     keys_named, load_weights_to_evaluate, register_and_check, setup_run)
from .trainer import DetectionTrainer

logger = logging.getLogger("detectron2.resnet_backbone")

#: The top-level names a config must define (detectron2's LazyConfig convention).
REQUIRED = ("model", "dataloader", "optimizer", "lr_multiplier", "train")
_ABSENT = object()


def is_lazy_config(path: str) -> bool:
    """A LazyConfig (Python) file, rather than a yacs YAML."""
    return str(path).endswith(".py")


# -- builders the configs name -------------------------------------------------------------


def build_resumable_train_loader(dataset: Sequence[Dict], mapper, total_batch_size: int, *,
                                 aspect_ratio_grouping: bool = True, num_workers: int = 0,
                                 seed: int = -1) -> ResumableTrainLoader:
    """``build_detection_train_loader``'s arguments (``dataset``: the records), returning the
    package's resumable loader (``.data``); ``seed`` -1 draws one (the same in every process)."""
    try:
        return ResumableTrainLoader(dataset, mapper, global_batch=total_batch_size,
                                    seed=seed if seed >= 0 else shared_random_seed(),
                                    aspect_ratio_grouping=aspect_ratio_grouping,
                                    num_workers=num_workers)
    except ValueError as e:
        raise ValueError(str(e).replace("SOLVER.IMS_PER_BATCH",
                                        "dataloader.train.total_batch_size")) from None


def multistep_lr_multiplier(*, steps: Sequence[int], max_iter: int, gamma: float = 0.1,
                            warmup_iters: int = 0, warmup_factor: float = 0.001,
                            warmup_method: str = "linear") -> WarmupParamScheduler:
    """The lr multiplier of the YAML path's ``WarmupMultiStepLR`` (``SOLVER.STEPS``,
    ``MAX_ITER``, ``GAMMA``, ``WARMUP_*``): x ``gamma`` at each step (iterations; those after
    ``max_iter`` are dropped), linear or constant warm-up over ``warmup_iters``."""
    kept = [s for s in steps if s <= max_iter]
    if len(kept) != len(steps):
        logger.warning(f"lr_multiplier.steps {list(steps)} has steps after train.max_iter "
                       f"{max_iter}; they are ignored.")
    schedule = MultiStepParamScheduler(values=[gamma ** k for k in range(len(kept) + 1)],
                                       milestones=kept, num_updates=max_iter)
    return WarmupParamScheduler(schedule, warmup_factor, min(warmup_iters / max_iter, 1.0),
                                warmup_method)


def build_evaluator(dataset_name: Union[str, Sequence[str]], output_dir: Optional[str] = None):
    """The evaluator the dataset needs (COCOEvaluator, PascalVOCDetectionEvaluator or the VOC
    2012 test-server writer), as the YAML path chooses it; results under
    ``output_dir/inference/<name>``."""
    names = dataset_list(dataset_name)
    if len(names) != 1:
        raise ValueError(f"dataloader.evaluator evaluates one dataset; dataloader.test names "
                         f"{names}: evaluate them one at a time "
                         "(dataloader.test.dataset.names=NAME)")
    from .config import get_detection_cfg

    cfg = get_detection_cfg()
    cfg.OUTPUT_DIR = output_dir or cfg.OUTPUT_DIR
    return DetectionTrainer.build_evaluator(cfg, names[0], os.path.join(
        cfg.OUTPUT_DIR, "inference", names[0]))


# -- config: load, override, check ----------------------------------------------------------


def dataset_list(names: Any) -> List[str]:
    """A dataset name or a list of them, as a list."""
    if isinstance(names, str):
        return [names]
    return [str(n) for n in (names or ())]


def loader_datasets(loader_cfg) -> List[str]:
    """The dataset names of a ``dataloader.train``/``test`` node (``dataset.names``), or []."""
    return dataset_list(OmegaConf.select(loader_cfg, "dataset.names", default=None))


def _call_parameters(node: DictConfig) -> Optional[List[str]]:
    """The keyword names the callable of a ``L(...)`` node takes, or None if it takes any. A
    class's ``**kwargs`` are followed up its bases' ``__init__`` (``PaperResNet`` passes them
    to ``ResNetBody``, ``Res5ROIHeads`` to ``ROIHeads``)."""
    target = node._target_
    try:
        target = locate(target) if isinstance(target, str) else target
        inits = ([c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__]
                 if inspect.isclass(target) else [target])
        names: List[str] = []
        for init in inits:
            params = inspect.signature(init).parameters
            names += [p for p in params if p != "self" and params[p].kind not in (
                inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                return list(dict.fromkeys(names))
        return None
    except (ImportError, ValueError, TypeError):
        return None


def check_override_key(cfg: DictConfig, key: str) -> None:
    """``key`` exists, or is an argument of the ``L(...)`` call it would be added to (so a typo
    is an error here rather than a silently added key or a TypeError while building)."""
    if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
        return
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if isinstance(parent, DictConfig) and "_target_" in parent:
        params = _call_parameters(parent)
        if params is None or leaf in params:
            return
        target = parent._target_
        name = target if isinstance(target, str) else getattr(target, "__qualname__", target)
        raise ValueError(f"override {key}: {name} takes no argument {leaf!r}; its arguments: "
                         f"{', '.join(params)}")
    where = f"{parent_key} has" if parent_key else "the config has"
    known = (f"; {where}: {', '.join(sorted(map(str, parent.keys())))}"
             if isinstance(parent, DictConfig) else "")
    raise ValueError(f"override {key}: no such key{known}")


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """``LazyConfig.apply_overrides`` after checking each ``key=value`` (see
    ``check_override_key``); a bad one is a ``ValueError``."""
    overrides = list(overrides)
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key or " " in key:
            raise ValueError(f"LazyConfig overrides are key=value (e.g. train.max_iter=1000 "
                             f"train.init_checkpoint=PATH); got {item!r} (KEY VALUE pairs are for "
                             f".yaml configs)")
        if not key.startswith(("+", "~")):  # hydra: +key adds a key on purpose, ~key deletes
            check_override_key(cfg, key)
    try:
        return LazyConfig.apply_overrides(cfg, overrides)
    except Exception as e:  # hydra's parser, omegaconf: all about the override strings
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"bad override in {overrides}: {type(e).__name__}: {first_line}") from None


def load_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``LazyConfig.load(path)`` (relative imports of sibling config files resolved), checked
    for the standard names, then ``overrides``."""
    check_config_path(path)
    try:
        cfg = LazyConfig.load(path)
    except Exception as e:  # the file's own code: a syntax error, or whatever it raised running
        raise python_config_error(path, e) from e
    missing = [name for name in REQUIRED if name not in cfg]
    if missing:
        raise ValueError(f"{path} defines no {', '.join(missing)}: a LazyConfig for "
                         f"resnet-train-det defines {', '.join(REQUIRED)} (see "
                         "configs/detection/faster_rcnn_R_101_C4_voc0712.py)")
    return apply_overrides(cfg, overrides)


# -- model ----------------------------------------------------------------------------------


def _first_conv(module: nn.Module) -> Optional[nn.Conv2d]:
    return next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)


def check_model(model: nn.Module) -> None:
    """The widths a LazyConfig writes out as numbers agree (the RPN head with the backbone and
    the anchors, the box predictor with the box head): a ``ValueError`` naming the keys."""
    backbone = getattr(model, "backbone", None)
    rpn = getattr(model, "proposal_generator", None)
    head = getattr(rpn, "rpn_head", None)
    if backbone is not None and head is not None and hasattr(backbone, "output_shape"):
        shapes, conv = backbone.output_shape(), _first_conv(head)
        for name in getattr(rpn, "in_features", []):
            if conv is not None and name in shapes and shapes[name].channels != conv.in_channels:
                raise ValueError(f"model.proposal_generator.head.in_channels is {conv.in_channels}"
                                 f" but the backbone's {name} has {shapes[name].channels} channels")
        logits = getattr(head, "objectness_logits", None)
        anchors = getattr(getattr(rpn, "anchor_generator", None), "num_anchors", None)
        if logits is not None and anchors and anchors[0] != logits.out_channels:
            raise ValueError(f"model.proposal_generator.head.num_anchors is {logits.out_channels}"
                             f" but the anchor generator makes {anchors[0]} anchors per position "
                             "(len(sizes[0]) x len(aspect_ratios[0]))")
    heads = getattr(model, "roi_heads", None)
    predictor = getattr(heads, "box_predictor", None)
    if predictor is None or not hasattr(predictor, "cls_score"):
        return
    if hasattr(heads, "res5"):
        width = getattr(heads.res5[-1], "out_channels", None)
        if width is not None and getattr(heads, "global_context", False):
            width *= 2  # each region's feature and the whole image's, concatenated
    else:
        shape = getattr(getattr(heads, "box_head", None), "output_shape", None)
        width = getattr(shape, "channels", None) if shape is not None else None
    if width is not None and predictor.cls_score.in_features != width:
        raise ValueError(f"model.roi_heads.box_predictor.input_shape.channels is "
                         f"{predictor.cls_score.in_features} but the box head outputs {width}")


def build_model(cfg: DictConfig) -> nn.Module:
    """``instantiate(cfg.model)`` on ``train.device``, checked (``check_model``), with the
    package's training fast path for the device (as the YAML path's trainer)."""
    try:
        model = instantiate(cfg.model)
    except TypeError as e:  # a keyword the class does not take, or a missing one
        raise ValueError(f"cannot build the model from the config: {e}") from None
    check_model(model)
    model.to(cfg.train.device)
    logger.info(f"Model:\n{model}")
    return speed_up_strided_1x1(model, cfg.train.device)


# -- training and evaluation: the engine's inputs from the config ------------------------------


#: The YAML keys the engine's errors name (``check_frozen_norms``, the checkpointer, divergence),
#: as the ``.py`` path's keys.
KEY_NAMES = [
    ("MODEL.PAPER_RESNET.NORM BN", "model.backbone.norm=BN model.roi_heads.res5.norm=BN"),
    ("MODEL.PAPER_RESNET.FREEZE_AT 0", "model.backbone.freeze_at=0"),
    ("MODEL.PAPER_RESNET (DEPTH, SHORTCUT, RESIDUAL, STRIDE_IN_1X1)",
     "model.backbone and model.roi_heads.res5 (depth, shortcut, residual, stride_in_1x1)"),
    ("MODEL.PAPER_RESNET.DEPTH", "model.backbone.depth"),
    ("(NORM FrozenBN, or stages frozen by FREEZE_AT)",
     "(norm FrozenBN, or stages frozen by freeze_at)"),
    ("MODEL.BACKBONE.NAME", "model.backbone"),
    ("MODEL.WEIGHTS", "train.init_checkpoint"),
    ("SOLVER.BASE_LR", "optimizer.lr"),
    ("SOLVER.WARMUP_ITERS", "lr_multiplier.warmup_iters"),
    ("set MODEL.ROI_HEADS.NUM_CLASSES ", "set model.roi_heads.num_classes="),
    ("MODEL.ROI_HEADS.NUM_CLASSES", "model.roi_heads.num_classes"),
    ("DATALOADER.SKIP_CORRUPT True", "dataloader.skip_corrupt=True"),
    ("DATASETS.STRICT False", "dataloader.strict=False"),
]

#: Kept for users of the names before the engine: the loop's trainers are the engine's.
LazySimpleTrainer, LazyAMPTrainer = SeededSimpleTrainer, SeededAMPTrainer


def do_test(cfg: DictConfig, model: nn.Module) -> Optional[Dict]:
    """``dataloader.test`` evaluated with ``dataloader.evaluator`` (``.engine.evaluate``: the
    results table and, for one named dataset, the paper's metric)."""
    if "evaluator" not in cfg.dataloader:
        return None
    names = loader_datasets(cfg.dataloader.test)
    name = names[0] if len(names) == 1 else None
    results = evaluate(model, [(name, lambda: instantiate(cfg.dataloader.test),
                                lambda: instantiate(cfg.dataloader.evaluator))])
    return next(iter(results.values()))


def do_train(args, cfg: DictConfig) -> Optional[Dict]:
    """Train (``.engine.DetectionEngine``, as ``lazyconfig_train_net.py`` does; see the module
    docstring); the last evaluation's results."""
    device = str(cfg.train.device)
    if cfg.train.amp.enabled and not device.startswith("cuda"):
        raise ValueError("train.amp.enabled=True needs CUDA (train.device is "
                         f"{device}); set train.amp.enabled=False")
    model = build_model(cfg)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    with numpy_compat():
        train_loader = instantiate(cfg.dataloader.train)
    if not isinstance(train_loader, ResumableTrainLoader):
        logger.warning(f"dataloader.train is {type(train_loader).__name__}, not "
                       "build_resumable_train_loader: a resumed run restarts its data order.")
    engine = DetectionEngine(TrainJob(
        model=model, optimizer=optimizer, scheduler=instantiate(cfg.lr_multiplier),
        train_loader=train_loader, evaluate=lambda m: do_test(cfg, m),
        output_dir=cfg.train.output_dir, max_iter=cfg.train.max_iter,
        weights=cfg.train.init_checkpoint, checkpointer=dict(cfg.train.checkpointer),
        eval_period=cfg.train.eval_period, log_period=cfg.train.log_period,
        amp=cfg.train.amp.enabled, ddp=dict(cfg.train.get("ddp", {})),
        seed=int(cfg.train.get("seed", 0)), key_names=KEY_NAMES,
        train_datasets=loader_datasets(cfg.dataloader.train)))
    engine.resume_or_load(args.resume)
    return engine.train()


def setup(args) -> DictConfig:
    """The config (file, then ``key=value`` overrides), the device (CPU when CUDA is not
    available), then ``.engine.setup_run`` (output folder, logging, config dump, seeds)."""
    cfg = load_config(args.config_file, args.opts)
    cfg.train.device = cpu_if_no_cuda(cfg.train.device, "train.device=cpu")

    def save_config(path: str) -> None:
        LazyConfig.save(cfg, path)

    setup_run(args, output_dir=cfg.train.output_dir, output_key="train.output_dir",
              seed=int(cfg.train.get("seed", -1)),
              cudnn_benchmark=bool(cfg.train.get("cudnn_benchmark", False)), save_config=save_config,
              resume_fixed=("model", "dataloader.train.total_batch_size", "dataloader.train.dataset"),
              resume_free=("model.device",), weights_key="train.init_checkpoint")
    return cfg


def register(cfg: DictConfig, args) -> None:
    """``--dataset`` entries; then every dataset the job names checked and validated
    (``dataloader.strict``: an error instead of skipping bad training annotations;
    ``dataloader.skip_corrupt``: the YAML's ``DATALOADER.SKIP_CORRUPT``)."""
    train = [] if args.eval_only else loader_datasets(cfg.dataloader.train)
    test = loader_datasets(cfg.dataloader.test) if "test" in cfg.dataloader else []
    with keys_named(KEY_NAMES):
        register_and_check(args.dataset, train, test,
                           strict=bool(cfg.dataloader.get("strict", False)),
                           output_dir=cfg.train.output_dir,
                           num_classes=OmegaConf.select(cfg, "model.roi_heads.num_classes",
                                                        default=None),
                           skip_corrupt=bool(cfg.dataloader.get("skip_corrupt", False)))


def train_and_evaluate(args):
    """The whole job of ``resnet-train-det`` for a ``.py`` config: (config, results by test
    dataset)."""
    cfg = setup(args)
    register(cfg, args)
    if args.eval_only:
        model = build_model(cfg)
        checkpointer = PaperDetectionCheckpointer(model, save_dir=cfg.train.output_dir)
        load_weights_to_evaluate(model, checkpointer, cfg.train.init_checkpoint, args.resume,
                                 KEY_NAMES)
        results = do_test(cfg, wrap_ddp(model))
    else:
        results = do_train(args, cfg)
    names = loader_datasets(cfg.dataloader.test) if "test" in cfg.dataloader else []
    return cfg, {", ".join(names) or "test": results}


__all__ = ["is_lazy_config", "load_config", "apply_overrides", "check_override_key",
           "build_model", "check_model", "build_resumable_train_loader",
           "multistep_lr_multiplier", "build_evaluator", "do_train", "do_test",
           "train_and_evaluate", "LazySimpleTrainer", "LazyAMPTrainer"]
