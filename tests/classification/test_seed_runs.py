"""The paper's "N runs" protocol (Table 6): run_seeds (its ``main``, in process) trains 2 seeds of
a tiny CIFAR-10 recipe for real, as train_cls processes; aggregate_runs reads their final results.
Also: printed commands, re-runs, unfinished runs, the paper's figure and the error paths."""
import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.classification.config import load_cls_cfg
from resnet_backbone.classification.seed_runs import TABLE6_PAPER_ERR, paper_figure
from resnet_backbone.cli import aggregate_runs, run_seeds
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches
from resnet_backbone.recipes import get_config_file

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "configs" / "classification"
#: test_train_cls.py's tiny CIFAR-10 recipe and fast settings, 2 iterations instead of 4
FAST = ["DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False", "LOG_PERIOD", "2"]
TINY = ["SOLVER.IMS_PER_BATCH", "16", "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1, 2)",
        "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2", *FAST]


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Seeds 0 and 1 of a ResNet-20 CIFAR-10 recipe on tiny data: (root, run_seeds argv). Each
    seed is a real train_cls process (run_seeds starts them)."""
    cifar = write_cifar10_batches(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py",
                                  make_synthetic(160, seed=0), make_synthetic(40, seed=1))
    root = tmp_path_factory.mktemp("seeds")
    argv = ["--config-file", str(CFG / "cifar10" / "resnet20.yaml"), "--num-seeds", "2",
            "--output-root", str(root), "DATASETS.ROOT", str(cifar), *TINY]
    assert run_seeds.main(argv) == 0
    return root, argv


def final_err(folder: Path) -> float:
    return json.loads((folder / "final_results.json").read_text())["val/center"]["top1_err"]


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


def test_print_commands_one_line_per_seed(tmp_path, capsys):
    out_root = tmp_path / "r110"
    rc = run_seeds.main(["--config-file", str(CFG / "cifar10" / "resnet110.yaml"), "--seeds", "3", "7",
                         "--output-root", str(out_root), "--print-commands",
                         "DATASETS.ROOT", "/data/cifar-10-batches-py", "SOLVER.AMP", "bf16"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0 and len(lines) == 2 and not out_root.exists()  # nothing run, nothing written
    for seed, line in zip((3, 7), lines):
        cmd = shlex.split(line)
        assert cmd[:4] == [sys.executable, "-m", "resnet_backbone.cli.train_cls", "--resume"]
        assert cmd[-4:] == ["SEED", str(seed), "OUTPUT_DIR", str(out_root / f"seed{seed}")]
        assert "SOLVER.AMP bf16" in line and "DATASETS.ROOT /data/cifar-10-batches-py" in line


def test_rerun_skips_finished_seeds_and_continues_an_interrupted_one(two_seeds, tmp_path, capfd):
    root, argv = two_seeds
    copy = shutil.copytree(root, tmp_path / "seeds")
    (copy / "seed1" / "final_results.json").unlink()  # seed 1 stopped before its final result
    before = {k: (copy / f"seed{k}" / "model_final.pth").read_bytes() for k in (0, 1)}
    argv = [a if a != str(root) else str(copy) for a in argv]
    assert run_seeds.main(argv) == 0
    captured = capfd.readouterr()
    out = captured.out
    assert f"seed 0: finished already ({copy / 'seed0'}), skipped" in out
    assert "seed 1: " in out and "--resume" in out and "| 2 of 2 |" in out
    # seed 1 resumed from its last checkpoint (the final one): no training, the same result
    assert f"{copy / 'seed1' / 'model_final.pth'} (resuming at iteration 2)" in captured.err
    assert final_err(copy / "seed1") == final_err(root / "seed1")
    assert all((copy / f"seed{k}" / "model_final.pth").read_bytes() == before[k] for k in (0, 1))


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


def test_a_root_with_a_run_of_its_own_is_read_as_its_seed_folders(two_seeds, tmp_path, capsys):
    root, _ = two_seeds  # resnet-run-seeds writes to the config's OUTPUT_DIR/seed<k> by default
    own = _run_like(root / "seed0", tmp_path / "out", 9, finished=True)
    for k in (0, 1):
        _run_like(root / f"seed{k}", own / f"seed{k}", k, finished=True)
    assert aggregate_runs.main([str(own), "--json", str(tmp_path / "a.json")]) == 0
    runs = json.loads((tmp_path / "a.json").read_text())["runs"]
    assert [(r["folder"], r["seed"]) for r in runs] == [(str(own / "seed0"), 0), (str(own / "seed1"), 1)]
