"""tools/analyze_model.py (resnet-analyze-model) as a user runs it, and the tables it prints."""
import pytest

from resnet_backbone.cli import analyze_model

from helpers import analyze_model_tables, in_parallel, run_tool


@pytest.fixture(scope="module")
def tables():
    """``analyze_model.py --table --json``, run once in this process (shared with
    tests/models/test_analysis.py)."""
    return analyze_model_tables()


def test_analyze_model_tool_reports_one_model_and_refuses_bad_names():
    done, bad = in_parallel(lambda: run_tool("analyze_model", "cifar_resnet56", "--input-size", "32"),
                            lambda: run_tool("analyze_model", "resnet51"))  # independent runs
    assert done.returncode == 0, done.stderr
    assert "parameters: 853,018 (0.85M)" in done.stdout and "conv" in done.stdout
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert bad.returncode == 2 and len(lines) == 1, bad.stderr
    assert lines[0].startswith("error: Unknown model 'resnet51'; valid choices: resnet18")


def test_analyze_model_tool_prints_the_tables(tables, capsys):
    analyze_model.print_tables(tables["table1"], tables["table6"])
    text = capsys.readouterr().out
    assert "11.327" in text and "19,421,274" in text and "19.4M" in text
    assert text.count("yes") == 11 and text.count("NO") == 3  # only the stride-in-3x3 rows
