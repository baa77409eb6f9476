"""Fixtures shared by the tests of several tools: tiny classification runs, trained once per
session (in this process, or as train_cls processes)."""
from pathlib import Path

import pytest

from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.engine import ClassificationTrainer
from resnet_backbone.cli import run_seeds
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches

from helpers import run_short_demo

CFG = Path(__file__).resolve().parents[2] / "configs" / "classification"
#: test_train_cls.py's tiny CIFAR-10 recipe and fast settings, 2 iterations instead of 4
FAST = ["DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False", "LOG_PERIOD", "2"]
TINY = ["SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1, 2)",
        "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2", *FAST]


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Output folders of a ResNet-20 and a plain-20 trained for 4 iterations on synthetic data
    (plot_curves, plot_responses, export_backbone)."""
    out = []
    for name in ("cifar_resnet20", "cifar_plain20"):
        cfg = get_cls_cfg()
        cfg.merge_from_list(["MODEL.NAME", name, "DATASETS.SYNTHETIC.NUM_TRAIN", 64,
                             "DATASETS.SYNTHETIC.NUM_TEST", 16, "SOLVER.IMS_PER_BATCH", 16,
                             "SOLVER.MAX_ITER", 4, "LOG_PERIOD", 1, "TEST.EVAL_PERIOD", 2,
                             "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False,
                             "OUTPUT_DIR", str(tmp_path_factory.mktemp(name))])
        ClassificationTrainer(cfg).train()
        out.append(Path(cfg.OUTPUT_DIR))
    return out


@pytest.fixture(scope="session")
def two_seeds(tmp_path_factory):
    """Seeds 0 and 1 of a ResNet-20 CIFAR-10 recipe on tiny data: (root, run_seeds argv). Each
    seed is a real train_cls process (run_seeds starts them). (run_seeds, aggregate_runs)"""
    cifar = write_cifar10_batches(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py",
                                  make_synthetic(160, seed=0), make_synthetic(40, seed=1))
    root = tmp_path_factory.mktemp("seeds")
    argv = ["--config-file", str(CFG / "cifar10" / "resnet20.yaml"), "--num-seeds", "2",
            "--output-root", str(root), "DATASETS.ROOT", str(cifar), *TINY]
    assert run_seeds.main(argv) == 0
    return root, argv


@pytest.fixture(scope="session")
def short_demo(tmp_path_factory):
    """(output folder, process) of ``python tools/train_det.py`` with no config and the short
    schedule (helpers.SHORT_DEMO): synthetic data, training, COCO evaluation. Trained once per
    session (~95 s on 2 cores): train_det's tests (its AP50, the appendix's test-time
    improvements on its model) and predict_det's use the same detector."""
    out = tmp_path_factory.mktemp("short_demo")
    return out, run_short_demo(out)
