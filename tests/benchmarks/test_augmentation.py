"""The augmentation rows of ``tools/benchmark.py`` run on real JPEG files and report every
pipeline (the speed figures themselves are in BENCHMARKS.md, measured on an idle machine)."""
from resnet_backbone.benchmarks.augmentation import augmentation_rows


def test_augmentation_rows_time_every_pipeline():
    rows = augmentation_rows(num_images=4, width=160, height=120, repeats=1)
    names = [r["pipeline"] for r in rows]
    assert names[:2] == ["paper definition (float)", "ours (crop first, uint8)"]
    assert any(n.startswith("torchvision RandomResizedCrop") for n in names)
    assert all(r["img_per_s_per_core"] > 0 for r in rows)
    assert rows[0]["vs_paper_definition"] == 1.0
