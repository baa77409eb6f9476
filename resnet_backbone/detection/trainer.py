"""The YAML (yacs ``CfgNode``) path of ``resnet-train-det``: its config turned into the inputs of
the one engine (``.engine``), and the job around it.

* ``setup`` / ``register`` / ``train_and_evaluate``: the config (package keys, the YAML or the
  demo's, overrides, what the weights say about the backbone), the datasets (the demo's written
  when no config is given), then training or ``--eval-only`` (with detectron2's test-time
  augmentation for ``TEST.AUG.ENABLED``).
* ``DetectionTrainer``: the public trainer, with detectron2 ``DefaultTrainer``'s names
  (``build_model``, ``build_optimizer``, ``build_lr_scheduler``, ``build_train_loader``,
  ``build_test_loader``, ``build_evaluator``, ``build_checkpointer``, ``test``,
  ``resume_or_load``, ``train``) and its config keys (``SOLVER.*``, ``TEST.EVAL_PERIOD``,
  ``TEST.PRECISE_BN``, ``TEST.EXPECTED_RESULTS``, ``SOLVER.REFERENCE_WORLD_SIZE``), a thin
  adapter over ``.engine.DetectionEngine``: the model with the package's training fast path for
  the device (``resnet_backbone.fast``), the resumable training loader (``.data``), the evaluator
  from the dataset (``COCOEvaluator``, ``PascalVOCDetectionEvaluator``: 11-point AP for VOC 2007
  as the paper, or the VOC 2012 server writer) and the paper's metric line after each
  evaluation (Table 7 / Table 8).
"""
import logging
import os
from typing import Dict, List, Optional

from detectron2.data import (DatasetMapper, build_detection_test_loader,
                             build_detection_train_loader, get_detection_dataset_dicts)
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import (COCOEvaluator, DatasetEvaluator, PascalVOCDetectionEvaluator,
                                   verify_results)
from detectron2.modeling import build_model
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import get_bn_modules

from ..distributed import cpu_if_no_cuda, get_world_size, is_main_process, shared_random_seed, synchronize
from ..fast import speed_up_strided_1x1
from .checkpoint import PaperDetectionCheckpointer
from .compat import has_compiled_ops, numpy_compat
from .data import ResumableTrainLoader
from .datasets import VOC_SUBMISSION, evaluator_type
from .engine import (DetectionEngine, SeededSteps, TrainJob, evaluate, load_weights_to_evaluate,
                     paper_metrics, register_and_check, setup_run)
from .voc_submission import VOCSubmissionWriter

logger = logging.getLogger("detectron2.resnet_backbone")


class DetectionTrainer:
    """The YAML config's ``DetectionEngine`` (see the module docstring)."""

    def __init__(self, cfg):
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):  # no setup_run yet
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, get_world_size())
        # built in DefaultTrainer's order: the RNG draws (weights, data seed) stay the same
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        self.cfg, self.max_iter = cfg, cfg.SOLVER.MAX_ITER
        self.engine = DetectionEngine(TrainJob(
            model=model, optimizer=optimizer, scheduler=self.build_lr_scheduler(cfg, optimizer),
            train_loader=data_loader, evaluate=lambda m: self.test(self.cfg, m),
            output_dir=cfg.OUTPUT_DIR, max_iter=cfg.SOLVER.MAX_ITER, weights=cfg.MODEL.WEIGHTS,
            checkpointer={"period": cfg.SOLVER.CHECKPOINT_PERIOD}, eval_period=cfg.TEST.EVAL_PERIOD,
            log_period=cfg.LOG_PERIOD, amp=cfg.SOLVER.AMP.ENABLED, ddp={"broadcast_buffers": False},
            seed=cfg.SEED, extra_hooks=self._precise_bn, train_datasets=cfg.DATASETS.TRAIN))

    def _precise_bn(self, model) -> List:
        """``TEST.PRECISE_BN``: BN statistics recomputed before each evaluation (and checkpoint)."""
        if not (self.cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(model)):
            return []
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0  # save some memory and time for PreciseBN
        return [hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, model, self.build_train_loader(cfg),
                                cfg.TEST.PRECISE_BN.NUM_ITER)]

    # what DefaultTrainer users read
    model = property(lambda self: self.engine.model)
    optimizer = property(lambda self: self.engine.job.optimizer)
    scheduler = property(lambda self: self.engine.job.scheduler)
    data_loader = property(lambda self: self.engine.job.train_loader)
    checkpointer = property(lambda self: self.engine.checkpointer)
    iter = property(lambda self: self.engine.iter)
    start_iter = property(lambda self: self.engine.start_iter)

    def resume_or_load(self, resume: bool = True) -> None:
        """``MODEL.WEIGHTS``, or with ``resume`` the newest readable checkpoint of
        ``OUTPUT_DIR`` (exact resume; see ``.engine``)."""
        self.engine.resume_or_load(resume)

    def train(self) -> Optional[Dict]:
        """Train to ``SOLVER.MAX_ITER``; the last evaluation's results (checked against
        ``TEST.EXPECTED_RESULTS`` when it lists any)."""
        results = self.engine.train()
        if len(self.cfg.TEST.EXPECTED_RESULTS) and is_main_process():
            assert results is not None, "No evaluation results obtained during training!"
            verify_results(self.cfg, results)
        return results

    @classmethod
    def build_model(cls, cfg):
        model = build_model(cfg)
        logging.getLogger("detectron2.engine.defaults").info(f"Model:\n{model}")
        return speed_up_strided_1x1(model, cfg.MODEL.DEVICE)

    @classmethod
    def build_optimizer(cls, cfg, model):
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_checkpointer(cls, cfg, model) -> PaperDetectionCheckpointer:
        """The checkpointer for evaluation-only runs (``--eval-only``)."""
        return PaperDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        kind = evaluator_type(dataset_name)
        if kind == "coco":
            tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
            output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
            return COCOEvaluator(dataset_name, tasks=tasks, distributed=True,
                                 output_dir=output_folder, use_fast_impl=has_compiled_ops())
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        if kind == VOC_SUBMISSION:
            return VOCSubmissionWriter(dataset_name, output_folder or os.path.join(
                cfg.OUTPUT_DIR, "inference", dataset_name))
        raise ValueError(f"Dataset {dataset_name!r} has evaluator_type {kind!r}; this trainer "
                         f"evaluates 'coco', 'pascal_voc' and '{VOC_SUBMISSION}' datasets.")

    @classmethod
    def build_train_loader(cls, cfg):
        """The resumable loader (``.data``) for detectron2's default sampler; others (repeat
        factors, random subsets) are detectron2's, whose data order restarts on resume."""
        with numpy_compat():
            if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
                logger.warning(f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN}: the "
                               "data order of a resumed run restarts from the beginning.")
                return build_detection_train_loader(cfg)
            records = get_detection_dataset_dicts(
                cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
                min_keypoints=cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE
                if cfg.MODEL.KEYPOINT_ON else 0,
                proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None)
        seed = cfg.SEED if cfg.SEED >= 0 else shared_random_seed()
        return ResumableTrainLoader(records, DatasetMapper(cfg, True),
                                    global_batch=cfg.SOLVER.IMS_PER_BATCH, seed=seed,
                                    aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
                                    num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        with numpy_compat():
            return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Each ``DATASETS.TEST`` set evaluated (``.engine.evaluate``: results table, paper
        metric); ``evaluators``, if given, one per set. One set's results, or ``{name: results}``."""
        names: List[str] = list(cfg.DATASETS.TEST)
        if isinstance(evaluators, DatasetEvaluator):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(f"{len(evaluators)} evaluators for {len(names)} DATASETS.TEST sets")
        results = evaluate(model, [
            (name, lambda name=name: cls.build_test_loader(cfg, name),
             (lambda name=name: cls.build_evaluator(cfg, name)) if evaluators is None
             else (lambda i=i: evaluators[i]))
            for i, name in enumerate(names)])
        return list(results.values())[0] if len(results) == 1 else results

    @classmethod
    def test_with_TTA(cls, cfg, model) -> Dict[str, Optional[Dict]]:
        """detectron2's test-time augmentation (``GeneralizedRCNNWithTTA``: every shorter side
        of ``TEST.AUG.MIN_SIZES`` up to ``TEST.AUG.MAX_SIZE``, and their flips with
        ``TEST.AUG.FLIP``), as its ``tools/train_net.py`` runs it with ``--eval-only`` and
        ``TEST.AUG.ENABLED True``: ``{"<dataset>_TTA": results}``, outputs under
        ``inference_TTA/``. The standard alternative to the appendix's multi-scale testing."""
        from detectron2.modeling import GeneralizedRCNNWithTTA

        logging.getLogger("detectron2.trainer").info("Running inference with test-time augmentation ...")
        evaluators = [cls.build_evaluator(cfg, name, os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = flat_results(cfg, cls.test(cfg, GeneralizedRCNNWithTTA(cfg, model), evaluators))
        return {f"{name}_TTA": value for name, value in results.items()}


def flat_results(cfg, results) -> Dict[str, Optional[Dict]]:
    """``{dataset: {task: {metric: value}}}`` whether ``test`` returned one dataset or several."""
    names = list(cfg.DATASETS.TEST)
    return {names[0]: results} if len(names) == 1 else dict(results or {})


# -- the job ----------------------------------------------------------------------------------


def setup(args):
    """The config: package keys, then the YAML (the demo's when none is given), then overrides,
    then what the weights say about the backbone (``.pretrained``); then ``.engine.setup_run``."""
    from .checkpoint import check_weights_file
    from .config import get_detection_cfg
    from .demo import demo_config_file
    from .pretrained import apply_weights_meta

    try:
        cfg = get_detection_cfg(args.config_file or demo_config_file(), args.opts)
    except (AssertionError, KeyError) as e:  # yacs reports unknown keys with assert
        raise ValueError(f"bad config: {e}. Keys are detectron2's plus MODEL.PAPER_RESNET.* and "
                         "MODEL.VGG16.* (resnet_backbone.detection.config); give KEY VALUE pairs "
                         "after all --options.") from e
    cfg.MODEL.DEVICE = cpu_if_no_cuda(cfg.MODEL.DEVICE, "MODEL.DEVICE cpu")
    if not args.resume:  # resuming may not read MODEL.WEIGHTS (the checkpointer checks it then)
        check_weights_file(cfg.MODEL.WEIGHTS)
    applied, warnings = apply_weights_meta(cfg, args.opts)
    cfg.freeze()

    def save_config(path: str) -> str:
        with open(path, "w") as f:
            f.write(cfg.dump())
        return cfg.dump()

    setup_run(args, output_dir=cfg.OUTPUT_DIR, seed=cfg.SEED, cudnn_benchmark=cfg.CUDNN_BENCHMARK,
              save_config=save_config)
    for line in applied:
        logger.info(line)
    for line in warnings:
        logger.warning(line)
    return cfg


def register(cfg, args) -> None:
    """``--dataset`` entries, and for the demo its generated datasets; then every dataset the
    job uses checked and validated (``DATASETS.STRICT``)."""
    from .demo import write_demo_datasets

    specs = [tuple(spec) for spec in args.dataset]
    if not args.config_file:
        data_dir = os.path.join(cfg.OUTPUT_DIR, "data")
        if is_main_process():
            write_demo_datasets(data_dir)
        synchronize()
        specs = write_demo_datasets(data_dir) + specs
    register_and_check(specs, [] if args.eval_only else list(cfg.DATASETS.TRAIN),
                       list(cfg.DATASETS.TEST), strict=cfg.DATASETS.STRICT, output_dir=cfg.OUTPUT_DIR,
                       num_classes=cfg.MODEL.ROI_HEADS.NUM_CLASSES,
                       skip_corrupt=cfg.DATALOADER.SKIP_CORRUPT)


def train_and_evaluate(args):
    """The whole job of ``resnet-train-det`` for a YAML config: (output folder, results by
    dataset)."""
    cfg = setup(args)
    register(cfg, args)
    if args.eval_only:
        model = DetectionTrainer.build_model(cfg)
        checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
        load_weights_to_evaluate(model, checkpointer, cfg.MODEL.WEIGHTS, args.resume)
        results = flat_results(cfg, DetectionTrainer.test(cfg, model))
        if cfg.TEST.AUG.ENABLED:
            results.update(DetectionTrainer.test_with_TTA(cfg, model))
    else:
        trainer = DetectionTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = flat_results(cfg, trainer.train())
    return cfg.OUTPUT_DIR, results


__all__ = ["DetectionTrainer", "SeededSteps", "has_compiled_ops", "paper_metrics", "flat_results",
           "setup", "register", "train_and_evaluate"]
