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
  newest readable one.
"""
import logging
import os
import weakref
from collections import OrderedDict
from typing import Dict, List, Optional

from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

from ..distributed import is_main_process
from ..fast import speed_up_strided_1x1
from .checkpoint import PaperDetectionCheckpointer
from .datasets import VOC_SUBMISSION, evaluator_type, numpy_compat
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


class DetectionTrainer(DefaultTrainer):
    """``DefaultTrainer`` + dataset-driven evaluators, paper metrics and a safe checkpointer."""

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
        with numpy_compat():
            return super().build_train_loader(cfg)

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


__all__ = ["DetectionTrainer", "has_compiled_ops", "paper_metrics", "default_setup_safe",
           "flat_results"]
