"""The one detection training engine, shared by the YAML path (``.trainer.DetectionTrainer``)
and the LazyConfig path (``.lazy``): each of them only turns its config into a ``TrainJob``
(model, optimizer, scheduler, train loader, evaluation, periods, output folder, AMP, DDP options).

What it owns, once for both paths:

* ``setup_run``: the output folder checked and claimed (``run_folder.claim_run``), detectron2's
  loggers (``setup_logger``), the environment report (``.compat.environment_report``: no traceback without compiled ops), the
  command line and config logged, the config saved as ``config.yaml``, the RNGs seeded (seed +
  rank), cuDNN benchmark, as detectron2's ``default_setup`` does;
* ``register_and_check``: ``--dataset`` registration, then every dataset of the job checked and
  validated before it starts;
* ``DetectionEngine``: detectron2's ``SimpleTrainer`` / ``AMPTrainer`` (``SeededSteps``: each
  step's RNGs from (run seed, iteration, process), the run seed in the checkpoints) with the hooks
  of ``tools/lazyconfig_train_net.py``: IterationTimer, LRScheduler, PeriodicCheckpointer,
  EvalHook, PeriodicWriter; the model in DDP through ``resnet_backbone.distributed.wrap_ddp``
  (device ids for a CUDA model only);
* the resume path (``DetectionEngine.resume_or_load``, ``load_weights``): the package's safe
  checkpointer (process 0's newest checkpoint, broadcast: no shared filesystem needed), the
  FrozenBN check, the resumable loader told where to continue, ``metrics.json`` cut back to the
  checkpoint;
* ``JSONLinesWriter``: ``metrics.json`` appended in whole lines (a run killed mid-write leaves no
  partial line to resume on), a public ``EventWriter`` in place of detectron2's ``JSONWriter``;
* divergence: a NaN/inf loss ends as one ``NonFiniteLossError`` line with the iteration, lr,
  the last good checkpoint and ``DIVERGENCE_CAUSES``;
* stopping on request (``StopOnRequest``): SIGTERM / Ctrl-C save the step's checkpoint and end
  the run with ``RunStopped``; a run that failed is not evaluated (``EvalAfterTraining``), and
  detectron2's traceback of an error reported in one line is dropped (``DropReportedTraceback``);
* ``evaluate``: inference on each test set, the results table and the paper's metric line.

Errors name the YAML keys; the LazyConfig path passes ``key_names`` to say its own.
"""
import json
import logging
import os
import signal
import sys
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple)

import torch
from detectron2.engine import AMPTrainer, SimpleTrainer, hooks
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils.env import seed_all_rng
from detectron2.utils.events import (CommonMetricPrinter, EventWriter, TensorboardXWriter,
                                     get_event_storage)
from detectron2.utils.logger import setup_logger
from torch import nn

from ..checkpoint import CheckpointError, append_text, keep_json_lines
from ..distributed import (all_reduce_sum, get_rank, get_world_size, is_main_process, synchronize,
                           wrap_ddp)
from ..errors import NonFiniteLossError, non_finite_loss_message, prepare_output_dir
from ..run_folder import claim_run
from ..seeding import derived_seed, seed_everything
from ..stopping import RunStopped, requested as stop_requested, stop_requests, stopped_message
from .checkpoint import CLASSES_KEY, DatasetClasses, PaperDetectionCheckpointer
from .compat import environment_report, numpy_compat, trainer_state
from .data import ResumableTrainLoader
from .datasets import check_datasets, evaluator_type, register_datasets, validate_datasets
from .pretrained import check_backbone_shapes, check_evaluated_predictor, check_frozen_norms

logger = logging.getLogger("detectron2.resnet_backbone")

#: What usually makes a detector's loss NaN or infinite (YAML keys; ``key_names`` renames them).
DIVERGENCE_CAUSES = ("SOLVER.BASE_LR too high (or SOLVER.WARMUP_ITERS too short) for this "
                     "batch; FrozenBN statistics that do not fit the weights (random weights, or "
                     "a pre-training too short for its BN statistics to converge); boxes outside "
                     "their images")


# -- set-up -----------------------------------------------------------------------------------


_RUN_LOG_HANDLERS: List[Tuple[logging.Logger, logging.Handler]] = []


def log_to(output_dir: str, rank: int) -> logging.Logger:
    """detectron2's and fvcore's loggers (``setup_logger``) writing to the console and to this
    run's ``log.txt`` only; returns the ``detectron2`` logger. Handlers an earlier run in this
    process installed (a notebook, a sweep, tests calling ``main`` twice) are removed first:
    they would print every line twice, write into the earlier run's log file, or write to a
    console stream that has since been closed."""
    for owner, handler in _RUN_LOG_HANDLERS:
        owner.removeHandler(handler)
        handler.close()
    _RUN_LOG_HANDLERS.clear()
    setup_logger.cache_clear()  # it is an lru_cache: the same arguments would add nothing back
    for name in ("fvcore", "detectron2"):
        owner = logging.getLogger(name)
        before = set(owner.handlers)
        setup_logger(output_dir, distributed_rank=rank, name=name)
        _RUN_LOG_HANDLERS.extend((owner, h) for h in owner.handlers if h not in before)
    return logging.getLogger("detectron2")


#: What a ``--resume`` may not change (YAML keys; ``setup_run``'s ``resume_fixed``): the network,
#: the batch (the data order and schedule the checkpoint continues), the training data.
RESUME_FIXED = ("MODEL", "SOLVER.IMS_PER_BATCH", "DATASETS.TRAIN")
RESUME_FREE = ("MODEL.WEIGHTS", "MODEL.DEVICE")


def setup_run(args, *, output_dir: str, seed: int, cudnn_benchmark: bool,
              save_config: Callable[[str], Optional[str]], output_key: str = "OUTPUT_DIR",
              resume_fixed: Sequence[str] = RESUME_FIXED, resume_free: Sequence[str] = RESUME_FREE,
              weights_key: str = "MODEL.WEIGHTS") -> None:
    """Before a job: ``output_dir`` checked and created (``output_key`` names it in errors) and
    claimed by process 0 (``run_folder.claim_run``: one run at a time, no silent overwrite, a
    resume that changes ``resume_fixed`` settings refused), detectron2's and fvcore's loggers
    writing ``log.txt`` there, the environment, command line and config file logged,
    ``save_config(path of config.yaml)`` (process 0; the text it returns is logged), the RNGs
    seeded (``seed`` + rank; a random one for ``seed`` < 0) and cuDNN benchmark set for
    training."""
    prepare_output_dir(output_dir, key=output_key)
    saved_text: List[Optional[str]] = []
    if is_main_process():
        with keys_named([("OUTPUT_DIR", output_key)]):
            claim_run(output_dir, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                      eval_only=args.eval_only,
                      write_config=lambda path: saved_text.append(save_config(path)),
                      fixed=resume_fixed, free=resume_free, weights_key=weights_key)
    rank = get_rank()
    d2_logger = log_to(output_dir, rank)
    d2_logger.info(f"Rank of current process: {rank}. World size: {get_world_size()}")
    d2_logger.info("Environment info:\n" + environment_report())
    d2_logger.info("Command line arguments: " + str(args))
    if getattr(args, "config_file", ""):
        with open(args.config_file) as f:
            d2_logger.info(f"Contents of args.config_file={args.config_file}:\n{f.read()}")
    if is_main_process():
        if saved_text and saved_text[0] is not None:
            d2_logger.info(f"Running with full config:\n{saved_text[0]}")
        d2_logger.info(f"Full config saved to {os.path.join(output_dir, 'config.yaml')}")
    seed_all_rng(None if seed < 0 else seed + rank)
    if not getattr(args, "eval_only", False):
        torch.backends.cudnn.benchmark = cudnn_benchmark


def register_and_check(specs: Sequence[Tuple[str, str, str]], train: Sequence[str],
                       test: Sequence[str], *, strict: bool, output_dir: str,
                       num_classes: Optional[int] = None, skip_corrupt: bool = False) -> None:
    """``--dataset`` entries registered; every dataset the job names checked and validated
    before step one (``strict``: an error instead of skipping bad training annotations;
    ``num_classes``: the detector's classes, at least the datasets' categories;
    ``skip_corrupt``: missing or unreadable training images left out instead of an error)."""
    register_datasets([tuple(spec) for spec in specs])
    check_datasets(list(train) + list(test))
    validate_datasets(list(train), list(test), strict=strict, output_dir=output_dir,
                      num_classes=num_classes, skip_corrupt=skip_corrupt)


@contextmanager
def keys_named(key_names: Sequence[Tuple[str, str]]) -> Iterator[None]:
    """User errors raised inside, with each (YAML key, own key) of ``key_names`` renamed."""
    try:
        yield
    except (ValueError, CheckpointError, NonFiniteLossError) as e:
        text = str(e)
        for yaml_key, own_key in key_names:
            text = text.replace(yaml_key, own_key)
        if text == str(e):
            raise
        raise type(e)(text) from None


# -- weights and resume -----------------------------------------------------------------------


def load_weights(model: nn.Module, checkpointer: PaperDetectionCheckpointer, weights: str,
                 resume: bool, key_names: Sequence[Tuple[str, str]] = ()) -> None:
    """``weights`` (or, resuming, the newest readable checkpoint of the checkpointer's folder),
    then the checks of what they filled: backbone weights of this network
    (``check_backbone_shapes``), FrozenBN statistics (``check_frozen_norms``)."""
    with keys_named(key_names):
        checkpointer.resume_or_load(weights, resume=resume)
        check_backbone_shapes(checkpointer.last_load)
        check_frozen_norms(model, checkpointer.last_load)


def load_weights_to_evaluate(model: nn.Module, checkpointer: PaperDetectionCheckpointer,
                             weights: str, resume: bool,
                             key_names: Sequence[Tuple[str, str]] = ()) -> None:
    """``load_weights`` for ``--eval-only``, in both config systems: also stop before a box
    predictor that the weights leave at its random initial values is evaluated
    (``check_evaluated_predictor``)."""
    load_weights(model, checkpointer, weights, resume, key_names)
    check_evaluated_predictor(checkpointer.last_load)


class SeededSteps:
    """Exact resume for a detectron2 trainer (put it first among the bases). The model's own
    sampling (RPN anchors, RoIs) draws from the global RNGs: each step seeds them from (run
    seed, iteration, process), and the checkpoints hold the run seed (the
    ``ResumableTrainLoader``'s), so a resumed step draws what the uninterrupted one drew."""

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
        state = trainer_state(state)
        super().load_state_dict(state)
        if "run_seed" in state and isinstance(self.data_loader, ResumableTrainLoader):
            self.data_loader.seed = state["run_seed"]


class SeededSimpleTrainer(SeededSteps, SimpleTrainer):
    """detectron2's ``SimpleTrainer`` with seeded steps."""


class SeededAMPTrainer(SeededSteps, AMPTrainer):
    """detectron2's ``AMPTrainer`` with seeded steps."""


# -- events -----------------------------------------------------------------------------------


class JSONLinesWriter(EventWriter):
    """detectron2's ``JSONWriter`` (the latest scalars of each iteration not yet written, one
    JSON object a line), each ``write()`` appended to the file in one call (``append_text``)."""

    def __init__(self, json_file: str, window_size: int = 20):
        self.path, self._window_size, self._last_write = json_file, window_size, -1

    def write(self) -> None:
        storage = get_event_storage()
        to_save: Dict[int, Dict[str, Any]] = {}
        for k, (v, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:  # keep scalars that have not been written
                to_save.setdefault(itr, {})[k] = v
        if to_save:
            self._last_write = max(to_save)
        lines = [json.dumps({**scalars, "iteration": itr}, sort_keys=True) + "\n"
                 for itr, scalars in to_save.items()]
        if lines:
            append_text(self.path, "".join(lines))


def event_writers(output_dir: str, max_iter: int, window: int = 20) -> List[EventWriter]:
    """detectron2's ``default_writers`` (progress with ETA, ``metrics.json``, TensorBoard), with
    ``metrics.json`` written in whole lines, its smoothed scalars (``time``, the losses) the median
    of the last ``window`` iterations."""
    os.makedirs(output_dir, exist_ok=True)
    return [CommonMetricPrinter(max_iter),
            JSONLinesWriter(os.path.join(output_dir, "metrics.json"), window_size=window),
            TensorboardXWriter(output_dir, window_size=window)]


#: Exceptions the tools report in one line (``DetectionEngine.train``, ``cli.common.run_tool``):
#: a non-finite loss, a checkpoint that cannot be written (a full disk), a stop on request.
REPORTED_IN_ONE_LINE = (FloatingPointError, CheckpointError, RunStopped)


class DropReportedTraceback(logging.Filter):
    """detectron2's train loop logs every exception with its traceback; those in
    ``REPORTED_IN_ONE_LINE`` are reported in one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], REPORTED_IN_ONE_LINE))


class EvalAfterTraining(hooks.EvalHook):
    """detectron2's ``EvalHook``, whose final evaluation (``after_train``, which detectron2 runs
    in a ``finally``) is skipped when training failed: a run that crashed at its last iteration
    (say, the final checkpoint on a full disk) is not evaluated as if it had finished."""

    def after_train(self):
        if sys.exc_info()[0] is None:
            super().after_train()


class StopOnRequest(hooks.HookBase):
    """A SIGTERM or Ctrl-C (``resnet_backbone.stopping``) seen by any process ends training after
    the current step: the processes agree on it (an all-reduce per step when there are
    several), process 0 saves the checkpoint of that step under the periodic checkpointer's name
    (unless it has just written it), and ``RunStopped`` says so."""

    def __init__(self, checkpointer, period: int, max_iter: int, output_dir: str):
        self.checkpointer, self.period, self.max_iter = checkpointer, period, max_iter
        self.output_dir = output_dir

    def after_step(self):
        flag = torch.tensor([float(stop_requested() is not None)])
        if get_world_size() > 1:  # on the model's device: NCCL reduces CUDA tensors only
            flag = all_reduce_sum(flag.to(next(self.trainer.model.parameters()).device)).cpu()
        it = self.trainer.iter
        if flag.item() == 0 or it + 1 >= self.max_iter:
            return
        name = f"model_{it:07d}"
        if is_main_process() and (self.period <= 0 or (it + 1) % self.period != 0):
            self.checkpointer.save(name, iteration=it)
        synchronize()
        signum = stop_requested() or signal.SIGTERM
        saved = os.path.join(self.output_dir, name + ".pth")
        raise RunStopped(stopped_message(signum, it + 1, saved), signum)


# -- evaluation -------------------------------------------------------------------------------


def paper_metrics(dataset_name: str, results: Dict[str, Dict[str, float]]) -> str:
    """The paper's numbers for one dataset's results, in one line."""
    box = results.get("bbox", {})
    if "AP50" not in box:
        return f"{dataset_name}: no box results"
    if evaluator_type(dataset_name) == "pascal_voc":
        return f"{dataset_name}: VOC mAP (AP50) = {box['AP50']:.1f}  [paper Table 7]"
    return (f"{dataset_name}: COCO mAP@.5 = {box['AP50']:.1f}, mAP@[.5,.95] = {box['AP']:.1f}"
            "  [paper Table 8]")


#: One test set: (dataset name or None when unknown, its loader factory, its evaluator factory).
TestSet = Tuple[Optional[str], Callable[[], Iterable], Callable[[], Any]]


def evaluate(model: nn.Module, test_sets: Sequence[TestSet]) -> "OrderedDict[str, Dict]":
    """``inference_on_dataset`` on each test set (loader, then evaluator, built here); on process
    0 the results table and, for a named dataset, the paper's metric line. ``{name: results}``
    (``"test"`` for an unnamed set)."""
    results: "OrderedDict[str, Dict]" = OrderedDict()
    for name, loader, evaluator in test_sets:
        with numpy_compat():
            one = inference_on_dataset(model, loader(), evaluator())
        results[name or "test"] = one
        if is_main_process() and one:
            logger.info(f"Evaluation results for {name or 'the test set'} in csv format:")
            print_csv_format(one)
            if name:
                logger.info("Paper metric: " + paper_metrics(name, one))
    return results


# -- the training loop ------------------------------------------------------------------------


@dataclass
class TrainJob:
    """What a config says about one training run, in the engine's terms."""

    model: nn.Module                 # on its device, not wrapped in DDP
    optimizer: torch.optim.Optimizer
    scheduler: Any                   # a torch LR scheduler, or an fvcore ParamScheduler (lr factor)
    train_loader: Iterable
    evaluate: Callable[[nn.Module], Any]  # the run's evaluation of the (wrapped) model
    output_dir: str
    max_iter: int
    weights: str = ""                # the initial weights (not read when resuming)
    checkpointer: Dict[str, Any] = field(default_factory=dict)  # PeriodicCheckpointer's period, ...
    eval_period: int = 0
    log_period: int = 20
    amp: bool = False
    ddp: Dict[str, Any] = field(default_factory=dict)  # wrap_ddp's options
    seed: int = 0                    # the run seed of a loader that is not resumable
    #: hooks run after the LR scheduler and before checkpointing (PreciseBN), given the model
    extra_hooks: Callable[[nn.Module], List[Any]] = lambda model: []
    key_names: Sequence[Tuple[str, str]] = ()  # YAML keys in errors -> this config's keys
    train_datasets: Sequence[str] = ()  # their class names go into every checkpoint


class DetectionEngine:
    """One training run of a ``TrainJob`` (see the module docstring): ``resume_or_load`` then
    ``train``, which returns the last evaluation's results."""

    def __init__(self, job: TrainJob):
        self.job = job
        self.model = wrap_ddp(job.model, **job.ddp)
        self.trainer = (SeededAMPTrainer if job.amp else SeededSimpleTrainer)(
            self.model, job.train_loader, job.optimizer)
        self.trainer.fallback_seed = max(int(job.seed), 0)
        classes = DatasetClasses.of_datasets(job.train_datasets)
        self.checkpointer = PaperDetectionCheckpointer(
            self.model, job.output_dir, trainer=self.trainer,
            **({CLASSES_KEY: classes} if classes else {}))
        self.start_iter, self.last_results = 0, None

        def evaluate_now():
            self.last_results = job.evaluate(self.model)
            return self.last_results

        main = is_main_process()
        self.trainer.register_hooks([
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=job.scheduler),
            *job.extra_hooks(self.model),
            hooks.PeriodicCheckpointer(self.checkpointer, **job.checkpointer) if main else None,
            EvalAfterTraining(job.eval_period, evaluate_now),
            hooks.PeriodicWriter(event_writers(job.output_dir, job.max_iter,
                                               window=min(20, job.log_period)),
                                 period=job.log_period) if main else None,
            StopOnRequest(self.checkpointer, job.checkpointer.get("period", 0), job.max_iter,
                          job.output_dir),
        ])

    @property
    def iter(self) -> int:
        return self.trainer.iter

    def resume_or_load(self, resume: bool) -> int:
        """The weights (or, resuming, the newest readable checkpoint); the iteration training
        starts from, which the resumable loader continues at; ``metrics.json`` cut back to it."""
        load_weights(self.model, self.checkpointer, self.job.weights, resume, self.job.key_names)
        # the checkpoint holds the iteration that had just finished
        self.start_iter = self.trainer.iter + 1 if self.checkpointer.resumed_from else 0
        if isinstance(self.job.train_loader, ResumableTrainLoader):
            self.job.train_loader.start_iter = self.start_iter
        if is_main_process():  # what the run logged after its checkpoint is logged again
            keep_json_lines(os.path.join(self.job.output_dir, "metrics.json"),
                            lambda row: row.get("iteration", -1) < self.start_iter)
        return self.start_iter

    def train(self) -> Any:
        """Iterations ``start_iter`` .. ``max_iter``; a loss that turns NaN/inf ends as one
        ``NonFiniteLossError`` line. The last evaluation's results (None without one)."""
        loop_logger = logging.getLogger("detectron2.engine.train_loop")
        drop = DropReportedTraceback()
        loop_logger.addFilter(drop)
        try:
            with keys_named(self.job.key_names), stop_requests():
                try:
                    self.trainer.train(self.start_iter, self.job.max_iter)
                except FloatingPointError:
                    last = (self.checkpointer.get_checkpoint_file()
                            if self.checkpointer.has_checkpoint() else "")
                    raise NonFiniteLossError(non_finite_loss_message(
                        "NaN or infinite", self.trainer.iter + 1,
                        self.job.optimizer.param_groups[0]["lr"], last, DIVERGENCE_CAUSES)) from None
        finally:
            loop_logger.removeFilter(drop)
        return self.last_results


__all__ = ["DetectionEngine", "TrainJob", "SeededSteps", "SeededSimpleTrainer", "SeededAMPTrainer",
           "JSONLinesWriter", "event_writers", "StopOnRequest", "EvalAfterTraining", "evaluate",
           "paper_metrics", "setup_run",
           "register_and_check", "load_weights", "load_weights_to_evaluate", "keys_named",
           "DIVERGENCE_CAUSES"]
