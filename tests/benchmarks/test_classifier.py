"""The strided_1x1 row of ``tools/benchmark.py`` (``benchmarks.classifier.strided_1x1_row``):
our paper R-50 with and without the strided-1x1 subsampling, both modes, with the choice the
trainers make in that layout (the speed figures themselves are in BENCHMARKS.md)."""
import pytest

from resnet_backbone.benchmarks import classifier
from resnet_backbone.cli import benchmark as cli


@pytest.mark.parametrize("channels_last, choice", [("off", "subsampled"), ("on", "strided")])
def test_strided_1x1_row_times_both_and_names_the_choice(channels_last, choice):
    args = cli.parse_args(["--rows", "strided_1x1", "--depths", "50", "--batch", "2",
                           "--image-size", "32", "--repeats", "1", "--warmup", "0",
                           "--channels-last", channels_last])
    rows = classifier.strided_1x1_row(cli.harness.Bench(args), args.grid)
    assert [(r["model"], r["mode"]) for r in rows] == [
        (f"ours (paper), {kind} 1x1 R-50", mode) for mode in ("train step", "inference")
        for kind in ("strided", "subsampled")]
    assert all(r["seconds"] > 0 and r["auto_choice"] == choice for r in rows)
    assert rows[0]["ratio_vs_peer"] == pytest.approx(1.0)
