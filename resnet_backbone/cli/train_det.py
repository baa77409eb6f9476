"""Train or evaluate the paper's Faster R-CNN detectors (appendix A) with detectron2.

detectron2's own command line (``tools/train_net.py``): ``--config-file``, ``--num-gpus``,
``--num-machines``, ``--machine-rank``, ``--dist-url``, ``--resume``, ``--eval-only`` and trailing
``KEY VALUE`` config overrides, plus ``--dataset NAME JSON IMAGE_ROOT`` (repeatable) to register
COCO-format datasets. Builtin COCO / VOC datasets are read from ``$DETECTRON2_DATASETS``.

    resnet-train-det                               # the demo: synthetic shapes, CPU, minutes
    resnet-train-det --config-file configs/detection/faster_rcnn_R_101_C4_voc0712.yaml \\
        --num-gpus 8 SOLVER.IMS_PER_BATCH 8
    resnet-train-det --config-file CFG --eval-only MODEL.WEIGHTS output/model_final.pth
    resnet-train-det --config-file CFG --eval-only MODEL.WEIGHTS W TEST.AUG.ENABLED True  # + TTA

A LazyConfig (``.py``) config runs as detectron2's ``tools/lazyconfig_train_net.py`` runs it, with
``key=value`` overrides (``resnet_backbone.detection.lazy``, whose docstring says what that path
guarantees and what it does not):

    resnet-train-det --config-file configs/detection/faster_rcnn_R_101_C4_voc0712.py \\
        train.init_checkpoint=R-101.pkl dataloader.train.total_batch_size=8

(``python tools/train_det.py`` is the same.) ``--num-gpus N`` starts N processes: NCCL on GPUs,
gloo on a CPU machine. Bad input ends with ``error: ...`` and exit status 2.
"""
import json
import logging
import os
import sys
import time

import torch

from ..distributed import is_main_process, launch, synchronize
from ..errors import prepare_output_dir
from .common import USER_ERRORS, print_error, run_tool, training_argument_parser

logger = logging.getLogger("detectron2.resnet_backbone")


def build_parser():
    parser = training_argument_parser(__doc__)
    parser.add_argument("--dataset", nargs=3, action="append", default=[],
                        metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format dataset under NAME (repeatable); use NAME in "
                             "DATASETS.TRAIN / DATASETS.TEST")
    return parser


def setup(args):
    """The config: package keys, then the YAML (the demo's when none is given), then overrides,
    then what the weights say about the backbone (``detection.pretrained``)."""
    from ..detection import get_detection_cfg
    from ..detection.checkpoint import check_weights_file
    from ..detection.demo import demo_config_file
    from ..detection.pretrained import apply_weights_meta
    from ..detection.trainer import default_setup_safe

    try:
        cfg = get_detection_cfg(args.config_file or demo_config_file(), args.opts)
    except (AssertionError, KeyError) as e:  # yacs reports unknown keys with assert
        raise ValueError(f"bad config: {e}. Keys are detectron2's plus MODEL.PAPER_RESNET.* and "
                         "MODEL.VGG16.* (resnet_backbone.detection.config); give KEY VALUE pairs "
                         "after all --options.") from e
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU (MODEL.DEVICE cpu).", file=sys.stderr)
        cfg.MODEL.DEVICE = "cpu"
    if not args.resume:  # resuming may not read MODEL.WEIGHTS (the checkpointer checks it then)
        check_weights_file(cfg.MODEL.WEIGHTS)
    prepare_output_dir(cfg.OUTPUT_DIR)
    applied, warnings = apply_weights_meta(cfg, args.opts)
    cfg.freeze()
    default_setup_safe(cfg, args)
    for line in applied:
        logger.info(line)
    for line in warnings:
        logger.warning(line)
    return cfg


def register(cfg, args):
    """``--dataset`` entries, and for the demo its generated datasets; then check every name
    and validate every dataset the job uses (``detection.validation``)."""
    from ..detection.datasets import check_datasets, register_datasets, validate_datasets
    from ..detection.demo import write_demo_datasets

    specs = [tuple(spec) for spec in args.dataset]
    if not args.config_file:
        data_dir = os.path.join(cfg.OUTPUT_DIR, "data")
        if is_main_process():
            write_demo_datasets(data_dir)
        synchronize()
        specs = write_demo_datasets(data_dir) + specs
    register_datasets(specs)
    train = [] if args.eval_only else list(cfg.DATASETS.TRAIN)
    check_datasets(train + list(cfg.DATASETS.TEST))
    validate_datasets(train, list(cfg.DATASETS.TEST), strict=cfg.DATASETS.STRICT,
                      output_dir=cfg.OUTPUT_DIR)


def train_and_evaluate(args):
    from ..detection.lazy import is_lazy_config
    from ..detection.pretrained import check_evaluated_predictor, check_frozen_norms
    from ..detection.trainer import DetectionTrainer, flat_results

    start = time.perf_counter()
    if is_lazy_config(args.config_file):
        from ..detection.lazy import train_and_evaluate as lazy_train_and_evaluate

        cfg, by_dataset = lazy_train_and_evaluate(args)
        if is_main_process():
            report(cfg.train.output_dir, by_dataset, time.perf_counter() - start)
        return by_dataset
    cfg = setup(args)
    register(cfg, args)
    if args.eval_only:
        model = DetectionTrainer.build_model(cfg)
        checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        check_frozen_norms(model, checkpointer.last_load)
        check_evaluated_predictor(checkpointer.last_load)
        results = flat_results(cfg, DetectionTrainer.test(cfg, model))
        if cfg.TEST.AUG.ENABLED:
            results.update(DetectionTrainer.test_with_TTA(cfg, model))
    else:
        trainer = DetectionTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = flat_results(cfg, getattr(trainer, "_last_eval_results", None))
    if is_main_process():
        report(cfg.OUTPUT_DIR, results, time.perf_counter() - start)
    return results


def worker(args, world_size: int) -> None:
    """One process's job; in a multi-process job a user error ends it with ``error: ...``."""
    try:
        train_and_evaluate(args)
    except USER_ERRORS as e:
        if world_size == 1:
            raise
        sys.exit(print_error(e))


def report(output_dir, results_by_dataset, seconds):
    """Save the final metrics (``{dataset: {task: {metric: value}}}``) as json and say where
    everything went."""
    out = os.path.abspath(output_dir)
    path = os.path.join(out, "results.json")
    with open(path, "w") as f:
        json.dump({"results": results_by_dataset, "seconds": round(seconds, 1)}, f, indent=1)
    logger.info(f"Finished in {seconds / 60:.1f} min. Outputs in {out}: checkpoints (*.pth, "
                f"last_checkpoint), metrics.json and TensorBoard events (tensorboard --logdir "
                f"{out}), log.txt, config.yaml, inference/, results.json.")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    print("Command Line Args:", args)
    world_size = args.num_gpus * args.num_machines

    def body() -> None:
        from ..detection.distributed import setup_detectron2_comm

        launch(worker, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args, world_size),
               worker_setup=setup_detectron2_comm)
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
