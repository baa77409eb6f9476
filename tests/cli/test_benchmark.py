"""``tools/benchmark.py`` runs end to end on a tiny configuration and writes valid JSON."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmark_tiny_classifier_run_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--rows", "classifier",
           "--depths", "18", "--batch", "1", "--image-size", "64", "--repeats", "2",
           "--warmup", "0", "--threads", "1", "--peak-tflops", "2", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["results"]
    assert {r["mode"] for r in rows} == {"train step", "inference"}
    models = {r["model"] for r in rows}
    assert {"ours (paper) R-18", "ours (3x3 stride) R-18", "torchvision R-18",
            "ours fast (paper) R-18"} <= models
    for r in rows:
        assert r["seconds"] > 0 and r["ratio_vs_peer"] > 0
        if r["model"].startswith("torchvision"):
            assert r["ratio_vs_peer"] == pytest.approx(1.0)
    assert report["machine"]["torch"] and report["date"] and "ratio" in proc.stdout
    # achieved TFLOP/s from fvcore's count: torchvision's ResNet-18 at 64x64 is 148,965,376
    # multiply-adds per image; 2 FLOPs each, and x3 for a training step.
    train = next(r for r in rows if r["model"] == "torchvision R-18" and r["mode"] == "train step")
    flops = 3 * 2 * 148_965_376
    assert train["tflops"] == pytest.approx(train["images_per_s"] * flops / 1e12, rel=1e-9)
    assert train["pct_of_peak"] == pytest.approx(100 * train["tflops"] / 2)

    # --render prints the saved run as Markdown tables and runs nothing
    shown = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"),
                            "--render", str(out)], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "#### classifier" in shown.stdout and "| torchvision R-18" in shown.stdout


def test_benchmark_rejects_unknown_row():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"),
                           "--rows", "speed"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "valid choices" in proc.stderr
