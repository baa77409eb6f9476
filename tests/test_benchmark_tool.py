"""``tools/benchmark.py`` runs end to end on a tiny configuration and writes valid JSON."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_tiny_classifier_run_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--rows", "classifier",
           "--depths", "18", "--batch", "1", "--image-size", "64", "--repeats", "2",
           "--warmup", "0", "--threads", "1", "--json", str(out)]
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


def test_benchmark_rejects_unknown_row():
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tools", "benchmark.py"),
                           "--rows", "speed"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "valid choices" in proc.stderr
