"""tools/analyze_model.py (resnet-analyze-model) as a user runs it."""
import os
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "analyze_model.py"


def run_tool(*args):
    """The tool as a user runs it, on one thread (faster than two on a shared machine)."""
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_analyze_model_tool_reports_one_model_and_refuses_bad_names():
    done = run_tool("cifar_resnet56", "--input-size", "32")
    assert done.returncode == 0, done.stderr
    assert "parameters: 853,018 (0.85M)" in done.stdout and "conv" in done.stdout
    bad = run_tool("resnet51")
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert lines[0].startswith("error: Unknown model 'resnet51'; valid choices: resnet18")
