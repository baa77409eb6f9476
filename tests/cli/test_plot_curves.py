"""tools/plot_curves.py on tiny trained runs."""
from helpers import PNG, tool_main as tool


def test_plot_curves_writes_png(runs, tmp_path):
    png = tmp_path / "curves.png"
    assert tool("plot_curves")([*map(str, runs), "--out", str(png), "--train-style", "dashed"]) == 0
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    assert tool("plot_curves")([str(tmp_path / "missing"), "--out", str(png)]) == 2
