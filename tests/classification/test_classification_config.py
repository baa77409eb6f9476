"""The classification config (``resnet_backbone.classification.config``): every recipe config of
the paper loads, passes the checks and names its paper number."""
from resnet_backbone.classification.config import get_cls_cfg


def test_every_recipe_config_loads_and_names_its_paper_number():
    from pathlib import Path

    from resnet_backbone.classification.config import check_cls_cfg
    from resnet_backbone.classification.engine import build_model

    root = Path(__file__).resolve().parents[2] / "configs" / "classification"
    files = sorted(p for p in root.rglob("*.yaml") if not p.name.startswith("Base-"))
    assert len(files) == 9 + 11
    for path in files:
        cfg = get_cls_cfg()
        cfg.merge_from_file(str(path))
        check_cls_cfg(cfg)
        header = path.read_text().splitlines()[0]
        assert header.startswith("#") and ("Table" in header or "Fig. 6" in header), path
        if "cifar" in path.parts[-2]:
            assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.STEPS, cfg.SOLVER.MAX_ITER) == (128, (32000, 48000), 64000)
            if "1202" not in path.name:
                build_model(cfg)
        else:
            assert (cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.LR_SCHEDULER, cfg.SOLVER.MAX_ITER) == (256, "plateau", 600000)
            assert cfg.INPUT.TRAIN_SCALE == [256, 480] and cfg.TEST.SCALES == [224, 256, 384, 480, 640]

