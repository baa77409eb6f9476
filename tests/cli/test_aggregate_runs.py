"""tools/aggregate_runs.py (the paper's "N runs" protocol, Table 6; its ``main``, in process) on
2 seeds of a tiny CIFAR-10 recipe trained for real by run_seeds (``two_seeds``, conftest.py):
statistics from the runs' final results, unfinished and missing runs, roots holding a run of
their own, and the error paths."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.cli import aggregate_runs, run_seeds

from helpers import final_err


def test_seeds_are_aggregated_from_their_final_results(two_seeds, tmp_path, capsys):
    root, _ = two_seeds
    assert aggregate_runs.main([str(root), "--json", str(tmp_path / "runs.json")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "runs.json").read_text())
    errs = [final_err(root / f"seed{k}") for k in (0, 1)]
    assert [(r["seed"], r["status"], r["top1_err"]) for r in data["runs"]] == [
        (0, "finished", errs[0]), (1, "finished", errs[1])]
    assert data["n"] == 2 and data["best"] == min(errs)
    assert data["mean"] == pytest.approx(np.mean(errs), abs=1e-12)
    assert data["std"] == pytest.approx(np.std(errs, ddof=1), abs=1e-12)
    assert data["std_kind"] == "sample std, n - 1" and "sample std, n - 1" in out
    assert f"| 2 of 2 | {min(errs):.2f} | {np.mean(errs):.2f} ± {np.std(errs, ddof=1):.2f} |" in out
    assert "Table 6: 8.75" in out  # ResNet-20's figure, though this tiny recipe is not the paper's
    # the two runs really used different seeds
    configs = [(root / f"seed{k}" / "config.yaml").read_text() for k in (0, 1)]
    assert [re.search(r"^SEED: (\d+)$", c, re.M).group(1) for c in configs] == ["0", "1"]
    w0, w1 = (load_checkpoint_file(root / f"seed{k}" / "model_final.pth")["model"] for k in (0, 1))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    losses = [[json.loads(line).get("train_loss") for line in
               (root / f"seed{k}" / "metrics.json").read_text().splitlines()] for k in (0, 1)]
    assert losses[0] != losses[1]


def _run_like(src: Path, dst: Path, seed: int, finished: bool, **replace) -> Path:
    """A copy of ``src``'s config.yaml (its SEED set to ``seed``, text replaced) and result."""
    dst.mkdir(parents=True)
    text = re.sub(r"^SEED: \d+$", f"SEED: {seed}", (src / "config.yaml").read_text(), flags=re.M)
    for old, new in replace.items():
        text = text.replace(old, new)
    (dst / "config.yaml").write_text(text)
    if finished:
        shutil.copy(src / "final_results.json", dst)
    return dst


def test_unfinished_and_missing_runs_are_listed_and_excluded(two_seeds, tmp_path, capsys):
    root, _ = two_seeds
    unfinished = _run_like(root / "seed0", tmp_path / "seed2", 2, finished=False)
    runs = [root / "seed0", root / "seed1", unfinished, tmp_path / "seed3"]
    assert aggregate_runs.main([*map(str, runs), "--json", str(tmp_path / "a.json")]) == 0
    captured = capsys.readouterr()
    data = json.loads((tmp_path / "a.json").read_text())
    assert [(r["seed"], r["status"]) for r in data["runs"]] == [
        (0, "finished"), (1, "finished"), (2, "unfinished"), (3, "missing")]
    assert data["n"] == 2 and data["best"] == min(final_err(root / f"seed{k}") for k in (0, 1))
    assert f"| {unfinished} | 2 | unfinished" in captured.out and "| 2 of 4 |" in captured.out
    assert "warning: 2 of 4 runs excluded from the statistics" in captured.err


def _error_of(capsys, main, argv):
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_error_line_exit_2(two_seeds, tmp_path, capsys):
    root, _ = two_seeds
    (tmp_path / "empty").mkdir()
    assert "no runs found" in _error_of(capsys, aggregate_runs.main, [tmp_path / "empty"])
    other = _run_like(root / "seed0", tmp_path / "r32" / "seed5", 5, finished=True,
                      **{"NAME: cifar_resnet20": "NAME: cifar_resnet32"})
    err = _error_of(capsys, aggregate_runs.main, [root, other.parent])
    assert "different recipes (MODEL.NAME: 'cifar_resnet20' vs 'cifar_resnet32')" in err
    twin = _run_like(root / "seed0", tmp_path / "twin", 0, finished=True)
    assert "both ran SEED 0" in _error_of(capsys, aggregate_runs.main, [root, twin])
    assert "SEED is set per seed" in _error_of(capsys, run_seeds.main, ["--print-commands", "SEED", 1])
    assert "Non-existent key" in _error_of(capsys, run_seeds.main, ["--print-commands", "NO.KEY", 1])


def test_a_root_with_a_run_of_its_own_is_read_as_its_seed_folders(two_seeds, tmp_path, capsys):
    root, _ = two_seeds  # resnet-run-seeds writes to the config's OUTPUT_DIR/seed<k> by default
    own = _run_like(root / "seed0", tmp_path / "out", 9, finished=True)
    for k in (0, 1):
        _run_like(root / f"seed{k}", own / f"seed{k}", k, finished=True)
    assert aggregate_runs.main([str(own), "--json", str(tmp_path / "a.json")]) == 0
    runs = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert [(r["folder"], r["seed"]) for r in runs] == [(str(own / "seed0"), 0), (str(own / "seed1"), 1)]
