#!/usr/bin/env python
"""Measure the learned quantities that the test suite bounds, under the CPU differences that
change floating-point rounding, so each bound can be set far from what any machine measures.

Another CPU model runs other kernels (AVX-512 or AVX2 and AMX in ATen and oneDNN), another
number of threads splits reductions differently, and both change the training trajectory the
way another seed does. This runs each bounded workload of the suite (the same command lines as
the tests) under

* the default kernels, 2 threads;
* ATen's AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2``);
* AVX2 in both ATen and oneDNN (``ONEDNN_MAX_CPU_ISA=AVX2``), the closest to an older CPU;
* one thread;

and several seeds, and prints every value with the worst one and the test's bound.

    python scripts/measure_test_margins.py                      # every workload (~40 min, 2 cores)
    python scripts/measure_test_margins.py --workloads cls --seeds 0 1 2
    python scripts/measure_test_margins.py --workloads det-appendix --variants default 1-thread
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# the workloads are defined by the tests themselves (tests/: the helpers.py they import)
sys.path[:0] = [str(REPO / "tests" / "cli"), str(REPO / "tests")]

VARIANTS = {
    "default": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "all-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "1-thread": {"OMP_NUM_THREADS": "1"},
}


def cls_workload(seed: int, out: Path):
    """tests/cli/test_train_cls.py: the shortened embedded demo of train_cls (top-1
    error %, lower is better)."""
    from test_train_cls import EMBEDDED_SHORT, EMBEDDED_MAX_ERR
    cmd = [str(REPO / "tools" / "train_cls.py"), *EMBEDDED_SHORT, "SEED", str(seed), "OUTPUT_DIR", str(out)]
    read = lambda: json.loads((out / "final_results.json").read_text())["val/center"]["top1_err"]
    return cmd, read, ("<", EMBEDDED_MAX_ERR)


def det_workload(seed: int, out: Path):
    """tests/cli/test_train_det.py: the shortened demo of train_det (COCO AP50 on held-out
    images, higher is better)."""
    from test_train_det import SHORT_DEMO, SHORT_DEMO_MIN_AP50
    cmd = [str(REPO / "tools" / "train_det.py"), *SHORT_DEMO, "SEED", str(seed), "OUTPUT_DIR", str(out)]
    read = lambda: json.loads((out / "results.json").read_text())["results"]["shapes_demo_val"]["bbox"]["AP50"]
    return cmd, read, (">", SHORT_DEMO_MIN_AP50)


def det_appendix_workload(seed: int, out: Path):
    """tests/cli/test_train_det.py: the shortened demo's model evaluated with each of the
    appendix's test-time improvements (AP50 of each; the test bounds every one)."""
    from test_train_det import DEMO_TEST_TIME_IMPROVEMENTS, SHORT_DEMO, SHORT_DEMO_MIN_AP50
    tool = str(REPO / "tools" / "train_det.py")
    cmds = [[tool, *SHORT_DEMO, "SEED", str(seed), "OUTPUT_DIR", str(out)]]
    cmds += [[tool, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"), *opts,
              "OUTPUT_DIR", str(out / name)] for name, opts in DEMO_TEST_TIME_IMPROVEMENTS.items()]
    read = lambda: {name: json.loads((out / name / "results.json").read_text())["results"][
        "shapes_demo_val"]["bbox"]["AP50"] for name in DEMO_TEST_TIME_IMPROVEMENTS}
    return cmds, read, (">", SHORT_DEMO_MIN_AP50)


WORKLOADS = {"cls": cls_workload, "det": det_workload, "det-appendix": det_appendix_workload}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = p.parse_args(argv)
    for name in args.workloads:
        values = []
        for variant in args.variants:
            for seed in args.seeds:
                with tempfile.TemporaryDirectory() as tmp:
                    cmds, read, (op, bound) = WORKLOADS[name](seed, Path(tmp) / "out")
                    env = {**os.environ, "OMP_NUM_THREADS": "2", **VARIANTS[variant]}
                    for cmd in (cmds if isinstance(cmds[0], list) else [cmds]):
                        proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=tmp, env=env,
                                              capture_output=True, text=True)
                        if proc.returncode != 0:
                            print(proc.stderr[-3000:], file=sys.stderr)
                            return 1
                    read_values = read()
                for part, value in (read_values.items() if isinstance(read_values, dict)
                                    else [("", read_values)]):
                    values.append(value)
                    print(f"{name} {part} {variant:10s} seed {seed}: {value:.1f}", flush=True)
        worst = max(values) if op == "<" else min(values)
        print(f"{name}: worst {worst:.1f} over {len(values)} runs; the test requires {op} {bound}\n",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
