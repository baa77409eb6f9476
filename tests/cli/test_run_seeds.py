"""tools/run_seeds.py (its ``main``, in process): the printed commands, one per seed, and a
re-run that skips finished seeds and resumes an interrupted one (on ``two_seeds``, conftest.py:
2 seeds of a tiny CIFAR-10 recipe trained for real as train_cls processes)."""
import shlex
import shutil
import sys
from pathlib import Path

from resnet_backbone.cli import run_seeds

from helpers import final_err

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "configs" / "classification"


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
