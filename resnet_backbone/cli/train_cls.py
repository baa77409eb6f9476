"""Train / evaluate the paper's ImageNet and CIFAR-10 classifiers (Sec. 3.4, Sec. 4.2).

    resnet-train-cls                                       # embedded demo (CPU, ~1 min)
    resnet-train-cls --config-file configs/classification/cifar10/resnet110.yaml \\
        DATASETS.ROOT /data/cifar-10-batches-py OUTPUT_DIR output/c10_r110
    resnet-train-cls --config-file ... --resume            # continue exactly
    resnet-train-cls --config-file ... --eval-only MODEL.WEIGHTS output/x/model_final.pth \\
        TEST.FINAL_MODES "['ten_crop','multi_scale']"
    resnet-train-cls --num-gpus 8 --config-file configs/classification/imagenet/resnet50.yaml ...

(``python tools/train_cls.py`` is the same.) detectron2's command line; multi-process with
``--num-gpus`` (gloo on CPU) or ``torchrun``. Bad input ends with ``error: ...`` and exit status 2.

Several machines (``--num-machines N --machine-rank R --dist-url tcp://HOST0:PORT`` on each,
``torchrun --nnodes N ...``, or ``srun`` with one task per GPU) need no shared filesystem, only
the same config and their own copy of the dataset (DATASETS.ROOT; MODEL.WEIGHTS too, when
given). Which files exist where:

* machine 0 (global rank 0) writes every output in its OUTPUT_DIR: config.yaml, pixel_mean.pth
  (a record; the mean image reaches the others by broadcast), metrics, checkpoints,
  last_checkpoint, model_final.pth, final_results.json; ``--resume`` reads its checkpoint
  there and broadcasts the content (weights, optimizer, scheduler, RNG state);
* the other machines write nothing in theirs (the folder is created), and read only their
  copy of the dataset: process 0's dataset check and mean image are broadcast;
* the dataset check's cache (``$XDG_CACHE_HOME``) is machine 0's.

A restarted machine rejoins with the same command and ``--resume``: every machine restarts
(the job is one process group), and all continue from machine 0's newest checkpoint.
"""
import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

from ..checkpoint import write_text_atomic
from ..classification.config import load_cls_cfg
from ..distributed import is_main_process, launch
from ..errors import prepare_output_dir
from ..run_folder import claim_run
from .common import job_world_size, run_tool, training_argument_parser, worker


#: What a ``--resume`` may not change: the network, the batch (the data order and the schedule
#: the checkpoint continues), the dataset.
RESUME_FIXED = ("MODEL", "SOLVER.IMS_PER_BATCH", "DATASETS.NAME", "DATASETS.FORMAT")


def setup(args, world_size: int):
    """The config: defaults (the embedded demo), the YAML, then ``KEY VALUE`` overrides."""
    cfg = load_cls_cfg(args.config_file, args.opts, world_size)
    prepare_output_dir(cfg.OUTPUT_DIR)
    cfg.freeze()
    return cfg


def train_and_evaluate(args, world_size: int) -> None:
    from ..classification.engine import ClassificationTrainer

    cfg = setup(args, world_size)
    logging.basicConfig(level=logging.INFO if is_main_process() else logging.WARNING,
                        format="[%(asctime)s %(name)s] %(message)s", datefmt="%H:%M:%S")
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    if is_main_process():  # the folder is this run's (a lock; no silent overwrite), config.yaml
        claim_run(cfg.OUTPUT_DIR, resume=args.resume, overwrite=args.overwrite,
                  eval_only=args.eval_only,
                  write_config=lambda path: write_text_atomic(path, cfg.dump()),
                  fixed=RESUME_FIXED, free=("MODEL.WEIGHTS", "MODEL.DEVICE"))
    trainer = ClassificationTrainer(cfg, resume=args.resume, eval_only=args.eval_only)
    if not args.eval_only:
        skipped = trainer.train()["skipped_train_images"]
        if skipped and is_main_process():
            print(f"{skipped} unreadable training images were skipped", flush=True)
    results = trainer.final_evaluation()
    if is_main_process():
        for name, r in results.items():
            print(f"{name}: top-1 error {r['top1_err']:.2f}%  top-5 error {r['top5_err']:.2f}%  "
                  f"({r['count']} images" + (f", {r['skipped']} unreadable skipped" if r["skipped"] else "")
                  + ")", flush=True)
        out = Path(cfg.OUTPUT_DIR)
        (out / ("eval_results.json" if args.eval_only else "final_results.json")).write_text(
            json.dumps(results, indent=2))
        best = ", model_best.pth (picked on the held-out split)" if (out / "model_best.pth").exists() else ""
        print(f"outputs in {out.resolve()}: config.yaml, metrics.csv, metrics.json, tensorboard/, "
              f"model_final.pth{best}, model_<iter>.pth, last_checkpoint, final_results.json "
              "(of model_final.pth)", flush=True)


def main(argv=None) -> int:
    args = training_argument_parser(__doc__).parse_args(argv)
    world_size = job_world_size(args)  # torchrun's, srun's, or the flags'

    def body() -> None:
        cfg = setup(args, world_size)  # config errors before any process starts
        launch(worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
               dist_url=args.dist_url, args=(train_and_evaluate, world_size, args, world_size),
               timeout=timedelta(seconds=cfg.DIST_TIMEOUT_S))
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
