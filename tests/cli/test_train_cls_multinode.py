"""tools/train_cls.py on two "machines" without a shared filesystem: two groups of processes on
this host, each with its own working folder (cwd), OUTPUT_DIR, copy of the dataset and
$XDG_CACHE_HOME, joined by gloo over 127.0.0.1, started the detectron2 way (``--num-machines 2
--machine-rank R --dist-url tcp://...``) or by ``torchrun --nnodes 2`` (c10d rendezvous). The
result must equal the one-process run with the same global batch (naiveSyncBN, as in
test_train_cls.py's two-process test); machine 1 must not need machine 0's files; a job resumes
after one machine was killed; a machine that never joins is named in one line."""
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches

from helpers import (crash_machine_1_and_resume, detectron2_style, finish_machines, free_port,
                     machine_folder, machine_with_outputs, run_two_machines, start_machine,
                     torchrun_style, two_machine_folders)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "train_cls.py"
#: Every machine runs the same command: relative paths, resolved in its own working folder.
OPTS = ["DATASETS.NAME", "cifar10", "DATASETS.ROOT", "data/cifar-10-batches-py",
        "MODEL.NORM", "naiveSyncBN", "SOLVER.IMS_PER_BATCH", 16, "SOLVER.MAX_ITER", 4,
        "SOLVER.STEPS", "(3, 5)", "SOLVER.CHECKPOINT_PERIOD", 1, "SOLVER.KEEP_LAST", 10,
        "TEST.EVAL_PERIOD", 4, "TEST.FINAL_MODES", "['center']", "DATALOADER.NUM_WORKERS", 0,
        "PROGRESS_BAR", False, "LOG_PERIOD", 2, "DIST_TIMEOUT_S", 60, "OUTPUT_DIR", "out"]
#: The bound of test_train_cls.py's two-process test (``torch.allclose``): float32 round-off of
#: a batch split over two processes. MEASURED: the largest absolute difference of a weight or BN
#: statistic from the one-process run's, on this job (2026-12-05, 2 cores; both launchers).
RTOL, ATOL = 1e-4, 1e-5
MEASURED = 6.1e-5


def _detectron2_style(port, rank, *extra):
    return detectron2_style(TOOL, port, rank, *extra, *OPTS)


def _torchrun(port, rank, *extra):
    return torchrun_style(TOOL, port, rank, *extra, *OPTS)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny CIFAR-10 python folder (96 training, 16 test images), copied to each machine."""
    return write_cifar10_batches(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py",
                                 make_synthetic(96, seed=0), make_synthetic(16, seed=1))


@pytest.fixture(scope="module")
def one_process(cifar, tmp_path_factory):
    """The weights of the one-process run of the same job (same global batch)."""
    folder = machine_folder(tmp_path_factory.mktemp("single"), "m", cifar)
    [(code, err, _)] = finish_machines([start_machine([sys.executable, TOOL, *OPTS], folder)])
    assert code == 0, err[-3000:]
    return load_checkpoint_file(folder / "out" / "model_final.pth")["model"]


def _assert_equal_to(reference, weights) -> float:
    """Every weight and BN statistic close to the reference (``RTOL``, ``ATOL``); the largest
    absolute difference."""
    assert reference.keys() == weights.keys()
    for name in reference:
        assert torch.allclose(reference[name], weights[name], rtol=RTOL, atol=ATOL), name
    return max((reference[n].double() - weights[n].double()).abs().max().item() for n in reference)


def _assert_needs_no_files_of(other: Path) -> None:
    """Machine 1 wrote nothing in its OUTPUT_DIR (no pixel_mean.pth, checkpoint or config):
    the run worked without any file of machine 0."""
    assert (other / "out").is_dir() and not list((other / "out").iterdir())


def test_two_machines_detectron2_flags_match_one_process(cifar, tmp_path, one_process):
    folders = two_machine_folders(tmp_path, cifar)
    run_two_machines(folders, _detectron2_style)
    main, other = machine_with_outputs(folders, "model_final.pth")
    assert main == folders[0]  # --machine-rank 0
    _assert_needs_no_files_of(other)
    assert (main / "out" / "pixel_mean.pth").exists()
    diff = _assert_equal_to(one_process, load_checkpoint_file(main / "out" / "model_final.pth")["model"])
    print(f"largest difference from the one-process run: {diff:.2e}")


def test_two_machines_torchrun_c10d_match_one_process(cifar, tmp_path, one_process):
    folders = two_machine_folders(tmp_path, cifar)
    run_two_machines(folders, _torchrun)
    main, other = machine_with_outputs(folders, "model_final.pth")
    _assert_needs_no_files_of(other)
    diff = _assert_equal_to(one_process, load_checkpoint_file(main / "out" / "model_final.pth")["model"])
    print(f"largest difference from the one-process run: {diff:.2e}")


@pytest.mark.slow
def test_resume_after_one_machine_was_killed(cifar, tmp_path, one_process):
    """Machine 1 is killed (SIGKILL: a crash) after machine 0 saved a checkpoint; machine 0 then
    stops with an error; both start again with --resume, machine 1 from an empty folder, and
    continue from machine 0's checkpoint to the one-process run's weights."""
    folders, errs = crash_machine_1_and_resume(tmp_path, cifar, _detectron2_style)
    assert re.search(r"resuming at iteration [1-3]\b", errs[0]), errs[0][-3000:]
    _assert_needs_no_files_of(folders[1])
    resumed = load_checkpoint_file(folders[0] / "out" / "model_final.pth")["model"]
    diff = _assert_equal_to(one_process, resumed)
    print(f"largest difference from the one-process run: {diff:.2e}")


def test_machine_that_never_joins_is_named(cifar, tmp_path):
    """Machine 0 alone, a short timeout: one ``error:`` line naming machine 1, exit status 2,
    and the run folder as it was (nothing is written before every machine has joined)."""
    folder = machine_folder(tmp_path, "m0", cifar)
    (folder / "out").mkdir()
    (folder / "out" / "notes.txt").write_text("kept")
    cmd = _detectron2_style(free_port(), 0, "--resume")
    cmd[cmd.index("DIST_TIMEOUT_S") + 1] = 2
    [(code, err, _)] = finish_machines([start_machine(cmd, folder)], timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: machine 1 of 2 did not join tcp://127.0.0.1:"), lines[0]
    assert "--machine-rank 1" in lines[0]
    assert [p.name for p in (folder / "out").iterdir()] == ["notes.txt"]


def test_two_machines_check_the_dataset_once(tmp_path):
    """An image folder (ImageNet layout, one unreadable training image, DATALOADER.SKIP_CORRUPT):
    machine 0 checks it and broadcasts the verdict; machine 1 checks nothing (its dataset-check
    cache stays empty) and skips the same image; a copy with other files stops both machines
    with one line naming the machine that holds it."""
    from helpers import small_imagenet

    source = small_imagenet(tmp_path / "imagenet")
    sorted((source / "train").rglob("*.JPEG"))[0].write_bytes(b"")
    folders = two_machine_folders(tmp_path, source)  # data/imagenet in each
    opts = ["--config-file", REPO / "configs" / "classification" / "imagenet" / "resnet18.yaml",
            "DATASETS.ROOT", "data/imagenet", "DATALOADER.SKIP_CORRUPT", True, "MODEL.NUM_CLASSES", 3,
            "INPUT.TRAIN_SCALE", "[32, 36]", "INPUT.CROP_SIZE", 32, "TEST.RESIZE", 32,
            "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 8, "SOLVER.MAX_ITER", 2,
            "TEST.FINAL_MODES", "['center']", "TEST.EVAL_PERIOD", 2, "DATALOADER.NUM_WORKERS", 0,
            "PROGRESS_BAR", False, "DIST_TIMEOUT_S", 60, "OUTPUT_DIR", "out"]

    def command(port, rank, *extra):
        return detectron2_style(TOOL, port, rank, *extra, *opts)

    run_two_machines(folders, command)
    assert list((folders[0] / "cache").rglob("*.json"))  # machine 0 checked (and cached)
    assert not list((folders[1] / "cache").rglob("*"))  # machine 1 did not
    _assert_needs_no_files_of(folders[1])
    extra = folders[1] / "data" / "imagenet" / "train" / "class0" / "extra.JPEG"
    shutil.copy(next((source / "val" / "class0").glob("*.JPEG")), extra)
    _both_stop_with(folders, command, "error: DATASETS.ROOT data/imagenet on machine 1 does not "
                    "hold the same train/ files as on machine 0")


def _both_stop_with(folders, command, line: str) -> None:
    """``command(port, rank, "--overwrite")`` on both machines: each stops with ``line``."""
    port = free_port()
    results = finish_machines([start_machine(command(port, r, "--overwrite"), f)
                               for r, f in enumerate(folders)], timeout=120)
    for code, err, _ in results:
        assert code != 0 and line in err, err[-3000:]


@pytest.mark.slow
def test_two_machines_read_their_own_shards(tmp_path):
    """Tar shards (DATASETS.FORMAT shards), a copy on each machine: the two machines train from
    their copies (4 shards, 2 readers); a copy that lacks a shard stops both machines with one
    line naming the machine and the shard, before training."""
    from helpers import small_imagenet
    from resnet_backbone.cli import make_shards

    assert make_shards.main(["imagenet", str(small_imagenet(tmp_path / "imagenet")),
                             str(tmp_path / "shards"), "--shard-size", "3", "--no-progress"]) == 0
    folders = two_machine_folders(tmp_path, tmp_path / "shards")  # data/shards in each
    opts = ["--config-file", REPO / "configs" / "classification" / "imagenet" / "resnet18.yaml",
            "DATASETS.FORMAT", "shards", "DATASETS.ROOT", "data/shards", "MODEL.NAME", "cifar_resnet20",
            "MODEL.NUM_CLASSES", 3, "INPUT.TRAIN_SCALE", "[32, 36]", "INPUT.CROP_SIZE", 32,
            "TEST.RESIZE", 32, "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 4, "SOLVER.MAX_ITER", 4,
            "TEST.FINAL_MODES", "['center']", "TEST.EVAL_PERIOD", 4, "DATALOADER.NUM_WORKERS", 0,
            "PROGRESS_BAR", False, "DIST_TIMEOUT_S", 60, "OUTPUT_DIR", "out"]

    def command(port, rank, *extra):
        return detectron2_style(TOOL, port, rank, *extra, *opts)

    out, _ = run_two_machines(folders, command)
    assert "val/center: top-1 error" in out and "(6 images)" in out
    _assert_needs_no_files_of(folders[1])
    (folders[1] / "data" / "shards" / "train-000002.tar").unlink()
    _both_stop_with(folders, command, "error: 1 of the 4 shards that train.json lists are missing "
                    "on machine 1: data/shards/train-000002.tar; copy them there")
