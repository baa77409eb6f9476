"""Model complexity against the paper: Table 1's FLOPs and Table 6's parameter counts, measured
with fvcore. (The tables as tools/analyze_model.py prints them: tests/cli/test_analyze_model.py.)"""
import pytest
from torch import nn

from resnet_backbone.models.analysis import (TABLE1_PAPER_GFLOPS, TABLE6_PAPER_PARAMS_M,
                                             count_flops, count_parameters, paper_round_params,
                                             paper_truncate, table6_rows)

from helpers import analyze_model_tables


def test_flops_are_multiply_adds():
    """A 3->4 3x3 conv on 8x8 (6x6 out) and a 10->2 fc: 6*6*4*(3*3*3) + 20 multiply-adds."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten(), nn.Linear(144, 2))
    assert count_flops(model, input_size=8) == 6 * 6 * 4 * 27 + 144 * 2
    assert count_parameters(model) == 4 * 27 + 144 * 2 + 2


def test_paper_prints_truncated_counts():
    assert paper_truncate(3.671) == 3.6 and round(3.671, 1) == 3.7  # ResNet-34: truncated
    assert paper_truncate(11.327) == 11.3 and paper_truncate(7.6) == 7.6
    assert [paper_round_params(m) for m in (0.269722, 1.727962, 19.421274)] == [0.27, 1.7, 19.4]


@pytest.fixture(scope="module")
def tables():
    """``analyze_model.py --table --json``, run once in this process (shared with
    tests/cli/test_analyze_model.py)."""
    return analyze_model_tables()


def test_table1_flops(tables):
    """fvcore FLOPs at 224x224 with the paper's stride placement: R50 3.88e9, R101 7.60e9,
    R152 11.33e9 (within 0.5%), R18 1.82e9, R34 3.67e9; truncated, they are Table 1's row."""
    rows = {(r["model"], r["stride"]): r for r in tables["table1"]}
    expected = {18: 1.82, 34: 3.67, 50: 3.88, 101: 7.60, 152: 11.33}
    for depth, gflops in expected.items():
        row = rows[(f"resnet{depth}", "1x1")]
        assert row["gflops"] == pytest.approx(gflops, rel=5e-3), depth
        assert row["paper_gflops"] == TABLE1_PAPER_GFLOPS[depth]
        assert row["gflops_truncated"] == TABLE1_PAPER_GFLOPS[depth] and row["matches_paper"]
    for depth in (50, 101, 152):  # torchvision's stride-in-3x3 placement is not the paper's
        v15 = rows[(f"resnet{depth}", "3x3")]
        assert v15["params"] == rows[(f"resnet{depth}", "1x1")]["params"]
        assert v15["gflops"] > rows[(f"resnet{depth}", "1x1")]["gflops"] + 0.2
        assert not v15["matches_paper"]


def test_table6_params(tables):
    assert [r["model"] for r in tables["table6"]] == [f"cifar_resnet{d}" for d in TABLE6_PAPER_PARAMS_M]
    for row in tables["table6"]:
        assert row["params_m_rounded"] == row["paper_params_m"] and row["matches_paper"], row
    assert table6_rows()[0]["params"] == tables["table6"][0]["params"]


def test_count_flops_keeps_training_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    count_flops(model, input_size=8)
    assert model.training
    with pytest.raises(ValueError, match="input_size"):
        count_flops(model, input_size=0)
