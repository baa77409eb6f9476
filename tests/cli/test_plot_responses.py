"""tools/plot_responses.py (Fig. 7) on tiny trained runs."""
from helpers import PNG, tool_main as tool


def test_plot_responses_writes_png_and_stds(runs, tmp_path):
    png = tmp_path / "fig7.png"
    weights = [str(r / "model_final.pth") for r in runs]
    assert tool("plot_responses")([*weights, "--num-images", "8", "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG
    import json
    saved = json.loads(png.with_suffix(".json").read_text())
    assert saved["measured_on"] == "8 synthetic test images"  # Fig. 7 says which images
    stds = saved["stds"]
    assert set(stds) == {"cifar_resnet20", "cifar_plain20"}
    assert all(len(v) == 19 and all(s > 0 for s in v) for v in stds.values())  # 6n+1 = 19 3x3 layers
