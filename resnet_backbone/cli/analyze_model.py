"""Parameters and FLOPs (multiply-adds, measured with fvcore) of the paper's networks, and the
paper's Table 1 FLOPs row and Table 6 parameter column reproduced beside the quoted numbers.

    python tools/analyze_model.py resnet50                      # 224x224, 1000 classes
    python tools/analyze_model.py cifar_resnet110 --input-size 32
    python tools/analyze_model.py resnet50 --stride-in-3x3      # torchvision's placement
    python tools/analyze_model.py --table                       # Table 1 and Table 6
    python tools/analyze_model.py --table --json

(``resnet-analyze-model`` is the same.) Bad input ends with one line ``error: ...`` and exit
status 2.
"""
import argparse
import json
import sys

from tabulate import tabulate

from .. import list_models
from ..models.analysis import analyze, table1_rows, table6_rows
from .common import add_network_options, network_options, run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=f"Models: {', '.join(list_models())}")
    parser.add_argument("name", nargs="?", metavar="NAME", help="model name (see the list below)")
    parser.add_argument("--input-size", type=int, default=224,
                        help="side of the square input image (default 224; CIFAR nets: 32)")
    add_network_options(parser)
    parser.add_argument("--table", action="store_true",
                        help="reproduce Table 1's FLOPs row and Table 6's parameter column")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)
    if not args.table and not args.name:
        parser.error("give a model NAME or --table")
    return args


def model_report(args: argparse.Namespace) -> dict:
    return analyze(args.name, args.input_size, args.num_classes, **network_options(args))


def print_model(report: dict) -> None:
    size = report["input_size"]
    print(f"{report['model']} {report['options'] or ''} on 1x3x{size}x{size}:")
    print(f"  parameters: {report['params']:,} ({report['params'] / 1e6:.2f}M)")
    print(f"  FLOPs (multiply-adds): {report['flops']:,} ({report['flops'] / 1e9:.3f}e9)")
    print(tabulate(sorted(report["flops_by_operator"].items(), key=lambda kv: -kv[1]),
                   headers=["operator", "multiply-adds"], intfmt=","))


def print_tables(table1: list, table6: list) -> None:
    print("Table 1, FLOPs at 224x224 (x1e9; the paper truncates to one decimal):")
    print(tabulate([(r["model"], r["stride"], f"{r['gflops']:.3f}", r["gflops_truncated"],
                     r["paper_gflops"], "yes" if r["matches_paper"] else "NO")
                    for r in table1],
                   headers=["model", "bottleneck stride in", "ours", "ours truncated", "paper",
                            "match"]))
    print("  (stride in 3x3 = torchvision's placement: more FLOPs than the paper reports)\n")
    print("Table 6, parameters of the CIFAR-10 ResNets (option A):")
    print(tabulate([(r["model"], f"{r['params']:,}", f"{r['params_m_rounded']}M",
                     f"{r['paper_params_m']}M", "yes" if r["matches_paper"] else "NO")
                    for r in table6],
                   headers=["model", "ours", "ours rounded", "paper", "match"]))


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: print_reports(args))


def print_reports(args: argparse.Namespace) -> None:
    report = model_report(args) if args.name else None
    tables = (table1_rows(), table6_rows()) if args.table else None
    if args.json:
        out = {}
        if report:
            out["model"] = report
        if tables:
            out["table1"], out["table6"] = tables
        print(json.dumps(out, indent=2))
        return
    if report:
        print_model(report)
    if tables:
        print_tables(*tables)


if __name__ == "__main__":
    sys.exit(main())
