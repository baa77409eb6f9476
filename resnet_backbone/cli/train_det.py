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

Several machines (``--num-machines N --machine-rank R --dist-url tcp://HOST0:PORT`` on each,
``torchrun --nnodes N ...``, or ``srun`` with one task per GPU) need no shared filesystem, only
the same config and their own copy of the datasets (and of MODEL.WEIGHTS): machine 0 checks a
COCO-format dataset once and broadcasts the verdict (every machine's json must be the same
file); machine 0 writes the checkpoints, metrics, results and evaluation outputs; every machine
writes its own log (``log.txt.rank<R>``) and, for a training set with bad annotations, its own
cleaned copy of the json (``OUTPUT_DIR/datasets``); ``--resume`` continues from machine 0's
newest checkpoint, broadcast to the others, so a machine restarted with an empty folder rejoins.
"""
import json
import logging
import os
import sys
import time
from datetime import timedelta

from ..checkpoint import write_text_atomic
from ..distributed import DEFAULT_TIMEOUT, is_main_process, launch, launched_by_torchrun
from .common import job_world_size, run_tool, training_argument_parser, worker

logger = logging.getLogger("detectron2.resnet_backbone")


def build_parser():
    parser = training_argument_parser(__doc__)
    parser.add_argument("--dataset", nargs=3, action="append", default=[],
                        metavar=("NAME", "JSON", "IMAGE_ROOT"),
                        help="register a COCO-format dataset under NAME (repeatable); use NAME in "
                             "DATASETS.TRAIN / DATASETS.TEST")
    return parser


def train_and_evaluate(args):
    """The job: the YAML path (``detection.trainer``) or the LazyConfig path
    (``detection.lazy``), both on ``detection.engine``; then ``results.json``."""
    from ..detection.lazy import is_lazy_config

    start = time.perf_counter()
    if is_lazy_config(args.config_file):
        from ..detection.lazy import train_and_evaluate as job

        cfg, results = job(args)
        output_dir = cfg.train.output_dir
    else:
        from ..detection.trainer import train_and_evaluate as job

        output_dir, results = job(args)
    if is_main_process():
        report(output_dir, results, time.perf_counter() - start)
    return results


def report(output_dir, results_by_dataset, seconds):
    """Save the final metrics (``{dataset: {task: {metric: value}}}``) as json and say where
    everything went."""
    out = os.path.abspath(output_dir)
    write_text_atomic(os.path.join(out, "results.json"),
                      json.dumps({"results": results_by_dataset, "seconds": round(seconds, 1)}, indent=1))
    logger.info(f"Finished in {seconds / 60:.1f} min. Outputs in {out}: checkpoints (*.pth, "
                f"last_checkpoint), metrics.json and TensorBoard events (tensorboard --logdir "
                f"{out}), log.txt, config.yaml, inference/, results.json.")


def dist_timeout(args) -> timedelta:
    """How long a collective waits (a machine that does not join, a dead worker): the YAML
    config's DIST_TIMEOUT_S, a LazyConfig's ``train.dist_timeout_s``, else 30 minutes. Read
    before any process starts; a config that cannot be read here keeps the default and its
    error is the job's to report (as it is without several machines)."""
    seconds = DEFAULT_TIMEOUT.total_seconds()
    if args.num_machines * args.num_gpus <= 1 and not launched_by_torchrun():
        return DEFAULT_TIMEOUT  # one process: no collective to wait for
    try:
        from ..detection.lazy import is_lazy_config

        if is_lazy_config(args.config_file):
            from detectron2.config import LazyConfig

            cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
            seconds = cfg.train.get("dist_timeout_s", seconds)
        else:
            from ..detection.config import get_detection_cfg

            seconds = get_detection_cfg(args.config_file, args.opts).DIST_TIMEOUT_S
    except Exception:  # noqa: BLE001 - reported by the job itself, with its own message
        pass
    return timedelta(seconds=float(seconds))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    print("Command Line Args:", args)
    world_size = job_world_size(args)  # torchrun's, srun's, or the flags'

    def body() -> None:
        launch(worker, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url,
               args=(train_and_evaluate, world_size, args), timeout=dist_timeout(args))
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
