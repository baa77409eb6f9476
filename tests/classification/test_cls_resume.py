"""Exact resume (in process, and after SIGKILL with a truncated newest checkpoint) and a
2-process DDP run (gloo, CPU) against the single-process run with the same global batch."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.engine import ClassificationTrainer

REPO = Path(__file__).resolve().parents[2]
TINY = ["DATASETS.SYNTHETIC.NUM_TRAIN", 96, "DATASETS.SYNTHETIC.NUM_TEST", 16,
        "SOLVER.IMS_PER_BATCH", 16, "SOLVER.STEPS", (3, 5), "DATALOADER.NUM_WORKERS", 0,
        "PROGRESS_BAR", False, "LOG_PERIOD", 2, "TEST.EVAL_PERIOD", 4]


def cfg_with(out, *opts):
    cfg = get_cls_cfg()
    cfg.merge_from_list(TINY + ["OUTPUT_DIR", str(out)] + list(opts))
    return cfg


def cli(*args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "2", **(env_extra or {})}
    return [sys.executable, str(REPO / "tools" / "train_cls.py"), *map(str, args)], env


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


#: The ImageNet augmentation (uint8 crops, lighting and mean on the device) on the synthetic images.
IMAGENET_RECIPE = ("INPUT.RECIPE", "imagenet", "INPUT.TRAIN_SCALE", [36, 48], "INPUT.CROP_SIZE", 32)


@pytest.mark.parametrize("recipe", [(), IMAGENET_RECIPE], ids=["cifar", "imagenet"])
def test_resume_is_bit_identical(tmp_path, recipe):
    full = ClassificationTrainer(cfg_with(tmp_path / "full", "SOLVER.MAX_ITER", 7, *recipe))
    full.train()
    part = ClassificationTrainer(cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 4, *recipe))
    part.train()  # stops at 4 with a checkpoint: then a fresh process-like trainer resumes
    resumed = ClassificationTrainer(cfg_with(tmp_path / "part", "SOLVER.MAX_ITER", 7, *recipe),
                                    resume=True)
    assert resumed.start_iter == 4
    resumed.train()
    assert_same_state(full.model.state_dict(), resumed.model.state_dict())
    for sa, sb in zip(full.optimizer.state.values(), resumed.optimizer.state.values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    assert abs(full.optimizer.param_groups[0]["lr"] - 0.001) < 1e-12  # 0.1 / 10 at 3, / 10 at 5
    rows = (tmp_path / "part" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "4", "6", "7", "7"]


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    opts = TINY + ["SOLVER.MAX_ITER", 15, "SOLVER.CHECKPOINT_PERIOD", 3, "SOLVER.KEEP_LAST", 10,
                   "TEST.EVAL_PERIOD", 15, "DATALOADER.NUM_WORKERS", 1]
    args, env = cli(*opts, "OUTPUT_DIR", tmp_path / "full")
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=300)
    args, env = cli(*opts, "OUTPUT_DIR", tmp_path / "killed")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (tmp_path / "killed" / "model_0000005.pth").exists() and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "model_final.pth").exists(), "the run ended before the kill"
    newest = sorted((tmp_path / "killed").glob("model_00*.pth"))[-1]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 3])  # as if the disk lost the end of it, after
    (tmp_path / "killed" / "last_checkpoint").write_text(newest.name)  # it was tagged
    args, env = cli("--resume", *opts, "OUTPUT_DIR", tmp_path / "killed")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Skipping incomplete checkpoint for resume: {newest}" in done.stderr
    assert "resuming from" in done.stderr
    assert_same_state(load_checkpoint_file(tmp_path / "full" / "model_final.pth")["model"],
                      load_checkpoint_file(tmp_path / "killed" / "model_final.pth")["model"])


def test_two_process_ddp_matches_single_process(tmp_path):
    """Same global batch 16: one process of 16, or two of 8 (gloo). Batch statistics would differ
    per process with plain BN, so both runs use naiveSyncBN, which normalises with the statistics
    of the whole global batch and tracks their unbiased variance (and is plain BN in a single
    process). Every parameter and BN statistic must agree to float round-off."""
    opts = ["SOLVER.MAX_ITER", 4, "MODEL.NORM", "naiveSyncBN", *TINY]
    outs = {}
    for n in (1, 2):
        args, env = cli("--num-gpus", n, *opts, "OUTPUT_DIR", tmp_path / f"p{n}")
        done = subprocess.run(args, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[n] = load_checkpoint_file(tmp_path / f"p{n}" / "model_final.pth")["model"]
    params = dict(ClassificationTrainer(cfg_with(tmp_path / "x", "MODEL.NORM", "BN")).model.named_parameters())
    assert outs[1].keys() == outs[2].keys()
    for name in outs[1]:
        assert torch.allclose(outs[1][name], outs[2][name], rtol=1e-4, atol=1e-5), name
    changed = sum(not torch.equal(outs[1][name], params[name].detach()) for name in params)
    assert changed > len(params) // 2  # training did move the weights


def _die_on_rank_1():
    import torch.distributed as dist

    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()  # rank 0 waits for a peer that is gone


def test_dead_worker_stops_the_job_with_a_message():
    from datetime import timedelta

    import pytest

    from resnet_backbone.distributed import WorkerFailedError, launch

    start = time.time()
    with pytest.raises(WorkerFailedError, match="worker process (1 stopped with signal SIGKILL|0 raised an error)"):
        launch(_die_on_rank_1, 2, timeout=timedelta(seconds=30))
    assert time.time() - start < 120


def test_best_weights_are_picked_on_held_out_training_data_only(tmp_path):
    """With DATASETS.VAL_HOLDOUT the validation images come out of the training set and pick
    model_best.pth; without it the evaluated set is the test set, and nothing is picked on it."""
    held_out = ClassificationTrainer(cfg_with(tmp_path / "holdout", "SOLVER.MAX_ITER", 4,
                                              "DATASETS.VAL_HOLDOUT", 16))
    held_out.train()
    best = load_checkpoint_file(tmp_path / "holdout" / "model_best.pth")
    assert best["val_top1_err"] == held_out.best_val and len(held_out.val_set) == 16
    no_split = ClassificationTrainer(cfg_with(tmp_path / "nosplit", "SOLVER.MAX_ITER", 4))
    no_split.train()
    assert not (tmp_path / "nosplit" / "model_best.pth").exists()
    assert (tmp_path / "nosplit" / "model_final.pth").is_file()
