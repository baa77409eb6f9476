"""Train one classification recipe with N seeds, the paper's "5 runs" (Table 6, ResNet-110):
seed k trains with ``SEED k`` into ``<output-root>/seed<k>``, one seed after another on this
machine, or printed as one independent command per seed (``--print-commands``) for a cluster.

    resnet-run-seeds --config-file configs/classification/cifar10/resnet110.yaml \\
        DATASETS.ROOT /data/cifar-10-batches-py      # seeds 0..4 -> output/cifar10/resnet110/seed<k>
    resnet-run-seeds --num-seeds 5 --print-commands --config-file ... DATASETS.ROOT ...
    resnet-aggregate-runs output/cifar10/resnet110   # then: best, mean ± std, the paper's figure

Run the same command again after an interruption: seeds whose folder holds final_results.json
are skipped, and an interrupted seed resumes exactly from its last checkpoint (every seed runs
``train_cls --resume``). Each seed is a fresh process (``python -m resnet_backbone.cli.train_cls``):
nothing leaks between seeds, and the sequential mode runs exactly the printed commands.
(``python tools/run_seeds.py`` is the same.) Bad input ends with ``error: ...`` and exit status 2.
"""
import argparse
import subprocess
import sys

from ..classification.seed_runs import (aggregate, check_overrides, describe, is_finished,
                                        markdown_table, plan_seed_runs,
                                        read_config, recipe_differences, warnings_of)
from ..classification.config import load_cls_cfg
from .common import run_tool


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", metavar="FILE",
                   help="the recipe (train_cls's --config-file)")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--num-seeds", type=int, metavar="N", help="seeds 0 .. N-1 (default 5)")
    seeds.add_argument("--seeds", type=int, nargs="+", metavar="K",
                       help="these seeds (then another --option, not the overrides)")
    p.add_argument("--output-root", default="", metavar="DIR",
                   help="seed k writes to DIR/seed<k> (default: the config's OUTPUT_DIR)")
    p.add_argument("--print-commands", action="store_true",
                   help="print one shell line per seed and run nothing")
    p.add_argument("--num-gpus", type=int, default=1, help="train_cls's --num-gpus, for each seed")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="config overrides, KEY VALUE pairs, for every seed (after every --option)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    def body() -> None:
        check_overrides(args.opts)
        cfg = load_cls_cfg(args.config_file, args.opts, args.num_gpus)  # bad overrides: now
        seeds = args.seeds if args.seeds is not None else range(
            5 if args.num_seeds is None else args.num_seeds)
        runs = plan_seed_runs(args.config_file, args.opts, seeds,
                              args.output_root or cfg.OUTPUT_DIR, args.num_gpus)
        if args.print_commands:
            print("\n".join(run.shell_line() for run in runs))
            return
        for run in runs:
            if (run.folder / "config.yaml").is_file():  # never resume nor skip another recipe
                diff = recipe_differences(read_config(run.folder), cfg)
                if diff:
                    raise ValueError(f"{run.folder} holds a run of another recipe ({describe(diff)});"
                                     " give another --output-root or remove that folder")
            if is_finished(run.folder):
                print(f"seed {run.seed}: finished already ({run.folder}), skipped", flush=True)
                continue
            print(f"seed {run.seed}: {run.shell_line()}", flush=True)
            rc = subprocess.call(run.command)
            if rc:
                raise ValueError(f"seed {run.seed} failed (exit status {rc}, see above); fix it and "
                                 "run this command again: finished seeds are skipped, this one "
                                 "resumes from its last checkpoint")
        agg = aggregate([run.folder for run in runs])
        print(markdown_table(agg))
        for line in warnings_of(agg):
            print(f"warning: {line}", file=sys.stderr)
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
