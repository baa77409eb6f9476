"""scripts/gpu_suite.sh runs only on a lent GPU machine, rarely; what it names must still exist
when it runs: the package names its helper imports, the tools and configs the steps start. (A
rename once broke its detector step unnoticed until a CPU smoke run: ``GPU_SUITE_DEVICE=cpu
GPU_SUITE_SMOKE=1 bash scripts/gpu_suite.sh``, ~200 s, runs every step.)"""
import ast
import importlib
import re
import subprocess

from helpers import REPO

SUITE = REPO / "scripts" / "gpu_suite.sh"
HELPERS = [REPO / "scripts" / "gpu_suite_report.py"]


def test_the_suite_parses_and_names_existing_tools_and_configs():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)
    text = SUITE.read_text()
    named = set(re.findall(r"\b((?:tools|configs|scripts)/[\w./-]+\.(?:py|yaml|sh))", text))
    assert {"tools/train_cls.py", "tools/train_det.py", "tools/make_shards.py"} <= named
    assert [p for p in sorted(named) if not (REPO / p).is_file()] == []


def test_the_helpers_import_names_that_exist():
    missing = []
    for path in HELPERS:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("resnet_backbone"):
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert missing == []
