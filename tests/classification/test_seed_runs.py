"""The paper's "N runs" figures (``resnet_backbone.classification.seed_runs``): Table 6's
figure of a paper recipe, and the differences that make a recipe not the paper's. (The tools
that run and aggregate the seeds: tests/cli/test_run_seeds.py, tests/cli/test_aggregate_runs.py.)"""
from pathlib import Path

from resnet_backbone.classification.config import load_cls_cfg
from resnet_backbone.classification.seed_runs import TABLE6_PAPER_ERR, paper_figure
from resnet_backbone.recipes import get_config_file

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "configs" / "classification"


def test_paper_figure_of_the_paper_recipes():
    cfg = load_cls_cfg(get_config_file("classification/cifar10/resnet110.yaml"), [])
    figure, differences = paper_figure(cfg)
    assert (figure.best, figure.mean, figure.std, figure.runs) == (6.43, 6.61, 0.16, 5)
    assert differences == [] and figure.text() == "Table 6: 6.43 (6.61 ± 0.16), best of 5 runs"
    cfg.defrost()
    cfg.SOLVER.MAX_ITER = 32000
    assert paper_figure(cfg)[1] == ["SOLVER.MAX_ITER"]
    for config in ("cifar10/plain56.yaml", "imagenet/resnet50.yaml"):
        assert paper_figure(load_cls_cfg(str(CFG / config), []))[0] is None
    for name, figure in TABLE6_PAPER_ERR.items():  # the configs' header comments quote the same
        header = (CFG / "cifar10" / f"{name[len('cifar_'):]}.yaml").read_text().split("_BASE_")[0]
        assert f"paper test error {figure.best}%" in header.replace("\n# ", " ")
