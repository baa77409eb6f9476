"""Aggregate runs of one classification recipe over seeds, as the paper reports ResNet-110 on
CIFAR-10 (Table 6: "best (mean ± std)" of 5 runs): per run its seed and the top-1 test error of
model_final.pth (train_cls's final_results.json; never a best checkpoint), then best (min),
mean ± sample std (n - 1) and the number of runs, beside the paper's figure for its CIFAR-10 nets.

    resnet-aggregate-runs output/cifar10/resnet110             # a root of seed<k>/ folders
    resnet-aggregate-runs out/a out/b out/c --json runs.json    # OUTPUT_DIR folders
    resnet-aggregate-runs output/cifar10/resnet110 --seeds 0 1 2 3 4   # absent seeds: missing

A Markdown table on stdout. Unfinished and missing runs are listed and left out of the statistics
(with a warning line); runs of different recipes are an error. (``python tools/aggregate_runs.py``
is the same.) Bad input ends with ``error: ...`` and exit status 2.
"""
import argparse
import json
import sys
from pathlib import Path

from ..classification.seed_runs import aggregate, find_run_folders, markdown_table, warnings_of
from .common import run_tool


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", help="OUTPUT_DIR folders of train_cls, or roots holding "
                   "seed<k>/ folders (resnet-run-seeds)")
    p.add_argument("--seeds", type=int, nargs="+", metavar="K", help="the seeds expected in a "
                   "root: absent seed<k> folders are listed as missing")
    p.add_argument("--mode", default=None, help="test view of final_results.json (center, "
                   "ten_crop, multi_scale; default: the runs' first TEST.FINAL_MODES entry)")
    p.add_argument("--json", metavar="PATH", help="also write the table's data as JSON here")
    args = p.parse_args(argv)

    def body() -> None:
        agg = aggregate(find_run_folders(args.paths, args.seeds), args.mode)
        print(markdown_table(agg))
        for line in warnings_of(agg):
            print(f"warning: {line}", file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps(agg.to_json(), indent=2) + "\n")
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
