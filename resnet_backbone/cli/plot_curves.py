"""Training (thin, or dashed) and validation (bold) error curves of one or more runs of
tools/train_cls.py on one plot, like Fig. 4 (ImageNet) and Fig. 6 (CIFAR-10).

    python tools/plot_curves.py output/cifar10/plain20 output/cifar10/plain56 --out fig6_left.png \
        --train-style dashed --ylim 0 20

(``resnet-plot-curves`` is the same.) Bad input ends with ``error: ...`` and exit status 2.
"""
import argparse
import sys
from pathlib import Path


from ..classification.plots import plot_curves, read_curves
from .common import run_tool


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="OUTPUT_DIR folders of tools/train_cls.py (metrics.csv)")
    p.add_argument("--labels", nargs="*", help="legend names (default: folder names)")
    p.add_argument("--out", default="curves.png", help="PNG file to write")
    p.add_argument("--title", default="")
    p.add_argument("--train-style", choices=("thin", "dashed"), default="thin",
                   help="thin: Fig. 4; dashed: Fig. 6")
    p.add_argument("--ylim", nargs=2, type=float)
    args = p.parse_args(argv)

    def body() -> None:
        labels = args.labels or [Path(r).name for r in args.runs]
        if len(labels) != len(args.runs):
            raise ValueError(f"{len(labels)} labels for {len(args.runs)} runs")
        runs = {label: read_curves(run) for label, run in zip(labels, args.runs)}
        print(plot_curves(runs, args.out, title=args.title, train_style=args.train_style,
                          ylim=args.ylim))
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
