"""``DetectionTrainer``: detectron2's ``DefaultTrainer`` for the paper's detectors.

What it adds to ``DefaultTrainer`` (progress with ETA, TensorBoard events, periodic checkpoints
and evaluation at ``TEST.EVAL_PERIOD`` come from it unchanged):

* the model with the package's training fast path for the device (``resnet_backbone.fast``);

* the evaluator from the dataset: ``COCOEvaluator`` (pure-Python COCO API when detectron2 has no
  compiled ops) or ``PascalVOCDetectionEvaluator`` (11-point AP for VOC 2007, as the paper);
* the paper's metrics after each evaluation: COCO mAP@.5 and mAP@[.5,.95] (Table 8), VOC mAP
  (Table 7);
* the plugin's safe, atomic ``PaperDetectionCheckpointer`` that, on ``--resume``, skips a newest
  checkpoint that cannot be read (truncated by a crash or a full disk) and continues from the
  newest readable one;
* exact resume: the training batches and their augmentation (``.data``) and the model's own
  random sampling (each step's RNGs are seeded from the run's seed, the iteration and the
  process) are functions of the iteration, so a resumed run continues the uninterrupted one;
  ``metrics.json`` is cut back to the checkpoint and appended in whole lines;
* the weights checked against a FrozenBN backbone (``.pretrained.check_frozen_norms``), and a
  loss that is not finite reported as one line with the iteration, lr and likely causes;
* several processes on CPU (gloo): DistributedDataParallel without ``device_ids`` for a CPU
  model (detectron2 always passes a GPU's); the CUDA path is detectron2's own.
"""
import contextlib
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, Iterator, List, Optional

from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as d2_defaults
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils.events import JSONWriter

from ..checkpoint import append_text, keep_json_lines
from ..distributed import get_rank, is_main_process, shared_random_seed
from ..errors import NonFiniteLossError, non_finite_loss_message
from ..fast import speed_up_strided_1x1
from ..seeding import derived_seed, seed_everything
from .checkpoint import PaperDetectionCheckpointer
from .data import ResumableTrainLoader
from .datasets import VOC_SUBMISSION, evaluator_type, numpy_compat
from .pretrained import check_frozen_norms
from .voc_submission import VOCSubmissionWriter

logger = logging.getLogger("detectron2.resnet_backbone")


def has_compiled_ops() -> bool:
    """Whether detectron2 was built with its C++/CUDA ops (the pure-Python build has none)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "PURE_PYTHON_BUILD", False)


def default_setup_safe(cfg, args) -> None:
    """detectron2's ``default_setup`` (logger, config dump, seeds). Its environment report asks
    ``detectron2._C`` for the compiler version, which the pure-Python build lacks: there the
    report says so instead of stopping the run."""
    from detectron2.engine import defaults

    original = defaults.collect_env_info

    def collect_env_info() -> str:
        try:
            return original()
        except AttributeError as e:
            return f"(detectron2 environment report unavailable: {e})"

    defaults.collect_env_info = collect_env_info
    try:
        defaults.default_setup(cfg, args)
    finally:
        defaults.collect_env_info = original


def paper_metrics(dataset_name: str, results: Dict[str, Dict[str, float]]) -> str:
    """The paper's numbers for one dataset's results, in one line."""
    box = results.get("bbox", {})
    if "AP50" not in box:
        return f"{dataset_name}: no box results"
    if evaluator_type(dataset_name) == "pascal_voc":
        return f"{dataset_name}: VOC mAP (AP50) = {box['AP50']:.1f}  [paper Table 7]"
    return (f"{dataset_name}: COCO mAP@.5 = {box['AP50']:.1f}, mAP@[.5,.95] = {box['AP']:.1f}"
            "  [paper Table 8]")


class WholeLinesFile:
    """A file for detectron2's ``JSONWriter``: what it writes is kept, and its ``flush()``
    appends it with one write call (``append_text``); no ``fileno``, so nothing else writes."""

    def __init__(self, path: str):
        self.path, self._parts = path, []

    def write(self, text: str) -> None:
        self._parts.append(text)

    def flush(self) -> None:
        if self._parts:
            append_text(self.path, "".join(self._parts))
            self._parts.clear()

    def close(self) -> None:
        self.flush()


def with_whole_line_metrics(writers: list, output_dir: str) -> list:
    """detectron2's event writers, with the ``JSONWriter``'s ``metrics.json`` appended in whole
    lines (``WholeLinesFile``): a run killed mid-write leaves no partial line to resume on."""
    for writer in writers:
        if isinstance(writer, JSONWriter):
            writer._file_handle.close()
            writer._file_handle = WholeLinesFile(os.path.join(output_dir, "metrics.json"))
    return writers


@contextlib.contextmanager
def _cpu_ddp_without_device_ids() -> Iterator[None]:
    """detectron2's ``create_ddp_model`` gives DistributedDataParallel ``device_ids=[local
    rank]``, which a CPU model refuses; inside this context a CPU model gets none (gloo)."""
    original = d2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        if not next(model.parameters()).is_cuda:
            kwargs.setdefault("device_ids", None)
        return original(model, **kwargs)

    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


class DropNonFiniteLossTraceback(logging.Filter):
    """detectron2's train loop logs every exception with its traceback; a non-finite loss is
    reported by ``DetectionTrainer.train`` in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], FloatingPointError))


#: What usually makes a detector's loss NaN or infinite.
DIVERGENCE_CAUSES = ("SOLVER.BASE_LR too high (or SOLVER.WARMUP_ITERS too short) for this "
                     "batch; FrozenBN statistics that do not fit the weights (random weights, or "
                     "a pre-training too short for its BN statistics to converge); boxes outside "
                     "their images")


class SeededSteps:
    """Exact resume for a detectron2 trainer (``DefaultTrainer``, ``SimpleTrainer``,
    ``AMPTrainer``; put it first among the bases). The model's own sampling (RPN anchors, RoIs)
    draws from the global RNGs: each step seeds them from (run seed, iteration, process), and
    the checkpoints hold the run seed (the ``ResumableTrainLoader``'s), so a resumed step draws
    what the uninterrupted one drew."""

    #: The run seed when the training loader is not a ``ResumableTrainLoader``.
    fallback_seed = 0

    @property
    def run_seed(self) -> int:
        loader = self.data_loader
        return loader.seed if isinstance(loader, ResumableTrainLoader) else self.fallback_seed

    def run_step(self):
        seed_everything(derived_seed(self.run_seed, self.iter, get_rank()))
        super().run_step()

    def state_dict(self):
        state = super().state_dict()
        state["run_seed"] = self.run_seed
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "run_seed" in state and isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.seed = state["run_seed"]


class DetectionTrainer(SeededSteps, DefaultTrainer):
    """``DefaultTrainer`` + dataset-driven evaluators, paper metrics, a safe checkpointer, exact
    resume, the checks above and CPU multi-process training."""

    def __init__(self, cfg):
        with _cpu_ddp_without_device_ids():
            super().__init__(cfg)

    def build_hooks(self):
        # DefaultTrainer.__init__ made a plain DetectionCheckpointer just before this call;
        # the hooks (PeriodicCheckpointer) must save through ours.
        self.checkpointer = PaperDetectionCheckpointer(self.checkpointer.model, self.cfg.OUTPUT_DIR,
                                                       trainer=weakref.proxy(self))
        return super().build_hooks()

    @classmethod
    def build_model(cls, cfg):
        return speed_up_strided_1x1(super().build_model(cfg), cfg.MODEL.DEVICE)

    @classmethod
    def build_checkpointer(cls, cfg, model) -> PaperDetectionCheckpointer:
        """The checkpointer for evaluation-only runs (``--eval-only``)."""
        return PaperDetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR)

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

    def build_writers(self):
        """detectron2's writers, with ``metrics.json`` appended in whole lines."""
        return with_whole_line_metrics(super().build_writers(), self.cfg.OUTPUT_DIR)

    @classmethod
    def build_train_loader(cls, cfg):
        """The resumable loader (``.data``) for detectron2's default sampler; others (repeat
        factors, random subsets) are detectron2's, whose data order restarts on resume."""
        with numpy_compat():
            if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
                logger.warning(f"DATALOADER.SAMPLER_TRAIN {cfg.DATALOADER.SAMPLER_TRAIN}: the "
                               "data order of a resumed run restarts from the beginning.")
                return super().build_train_loader(cfg)
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

    @property
    def fallback_seed(self) -> int:
        return max(self.cfg.SEED, 0)

    def resume_or_load(self, resume: bool = True):
        super().resume_or_load(resume=resume)
        check_frozen_norms(self.model, self.checkpointer.last_load)
        if isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.start_iter = self.start_iter
        if is_main_process():  # what the run logged after its checkpoint is logged again
            keep_json_lines(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"),
                            lambda row: row.get("iteration", -1) < self.start_iter)

    def state_dict(self):
        state = super().state_dict()
        # detectron2 v0.6's DefaultTrainer saves no optimizer (nor AMP scaler) state, so a
        # resumed run restarted SGD's momentum; detectron2 main saves it under this key.
        state.setdefault("_trainer", self._trainer.state_dict())
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "_trainer" in state and "load_state_dict" not in vars(DefaultTrainer):  # v0.6
            self._trainer.load_state_dict(state["_trainer"])

    def train(self):
        loop_logger = logging.getLogger("detectron2.engine.train_loop")
        drop = DropNonFiniteLossTraceback()
        loop_logger.addFilter(drop)
        try:
            return super().train()
        except FloatingPointError:
            last = self.checkpointer.get_checkpoint_file() if self.checkpointer.has_checkpoint() else ""
            raise NonFiniteLossError(non_finite_loss_message(
                "NaN or infinite", self.iter + 1, self.optimizer.param_groups[0]["lr"], last,
                DIVERGENCE_CAUSES)) from None
        finally:
            loop_logger.removeFilter(drop)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        with numpy_compat():
            return super().build_test_loader(cfg, dataset_name)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """``DefaultTrainer.test`` per dataset, then the paper's metrics of each."""
        names: List[str] = list(cfg.DATASETS.TEST)
        if evaluators is not None and not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        results = OrderedDict()
        for i, name in enumerate(names):
            one = cfg.clone()
            one.defrost()
            one.DATASETS.TEST = (name,)
            with numpy_compat():
                results[name] = super().test(one, model, None if evaluators is None
                                             else [evaluators[i]])
        if is_main_process():
            for name, res in results.items():
                if res:
                    logger.info("Paper metric: " + paper_metrics(name, res))
        return list(results.values())[0] if len(results) == 1 else results


def flat_results(cfg, results) -> Dict[str, Optional[Dict]]:
    """``{dataset: {task: {metric: value}}}`` whether ``test`` returned one dataset or several."""
    names = list(cfg.DATASETS.TEST)
    return {names[0]: results} if len(names) == 1 else dict(results or {})


__all__ = ["DetectionTrainer", "SeededSteps", "has_compiled_ops", "paper_metrics", "default_setup_safe",
           "flat_results", "with_whole_line_metrics"]
