"""tools/train_cls.py on two "machines" without a shared filesystem: two groups of processes on
this host, each with its own working folder (cwd), OUTPUT_DIR, copy of the dataset and
$XDG_CACHE_HOME, joined by gloo over 127.0.0.1, started the detectron2 way (``--num-machines 2
--machine-rank R --dist-url tcp://...``) or by ``torchrun --nnodes 2`` (c10d rendezvous). The
result must equal the one-process run with the same global batch (naiveSyncBN, as in
test_train_cls.py's two-process test); machine 1 must not need machine 0's files; a job resumes
after one machine was killed; a machine that never joins is named in one line."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.data.synthetic import make_synthetic, write_cifar10_batches

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A tiny CIFAR-10 python folder (96 training, 16 test images), copied to each machine."""
    return write_cifar10_batches(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py",
                                 make_synthetic(96, seed=0), make_synthetic(16, seed=1))


def _machine(base: Path, name: str, cifar: Path) -> Path:
    """A machine's working folder with its own copy of the dataset and its own cache."""
    folder = base / name
    shutil.copytree(cifar, folder / "data" / cifar.name)
    (folder / "cache").mkdir()
    return folder


def _start(cmd, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(folder / "cache")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen([str(c) for c in cmd], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(procs, timeout=180):
    """(returncode, stderr) of each process."""
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            _, err = p.communicate()
        out.append((p.returncode, err))
    return out


def _detectron2_style(port, rank, *extra):
    return [sys.executable, TOOL, "--num-machines", 2, "--machine-rank", rank, "--dist-url",
            f"tcp://127.0.0.1:{port}", "--num-gpus", 1, *extra, *OPTS]


def _torchrun(port, rank, *extra):
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", 2, "--nproc-per-node", 1,
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--node-rank", rank,
            "--rdzv-id", "t", TOOL, *extra, *OPTS]


def _two_machines(tmp_path, cifar, command, *extra, folders=None):
    folders = folders or [_machine(tmp_path, f"m{r}", cifar) for r in (0, 1)]
    port = _free_port()
    results = _finish([_start(command(port, r, *extra), f) for r, f in enumerate(folders)])
    for code, err in results:
        assert code == 0, err[-3000:]
    return folders, [err for _, err in results]


@pytest.fixture(scope="module")
def one_process(cifar, tmp_path_factory):
    """The weights of the one-process run of the same job (same global batch)."""
    folder = _machine(tmp_path_factory.mktemp("single"), "m", cifar)
    [(code, err)] = _finish([_start([sys.executable, TOOL, *OPTS], folder)])
    assert code == 0, err[-3000:]
    return load_checkpoint_file(folder / "out" / "model_final.pth")["model"]


def _assert_equal_to(reference, weights) -> float:
    """Every weight and BN statistic close to the reference (``RTOL``, ``ATOL``); the largest
    absolute difference."""
    assert reference.keys() == weights.keys()
    for name in reference:
        assert torch.allclose(reference[name], weights[name], rtol=RTOL, atol=ATOL), name
    return max((reference[n].double() - weights[n].double()).abs().max().item() for n in reference)


def _main_and_other(folders):
    """(machine 0's folder, the other's): the one with the outputs is machine 0 (under c10d,
    torchrun numbers the machines in the order they join)."""
    done = [f for f in folders if (f / "out" / "model_final.pth").exists()]
    assert len(done) == 1, "exactly one machine writes the outputs"
    return done[0], next(f for f in folders if f != done[0])


def _assert_needs_no_files_of(other: Path) -> None:
    """Machine 1 wrote nothing in its OUTPUT_DIR (no pixel_mean.pth, checkpoint or config):
    the run worked without any file of machine 0."""
    assert (other / "out").is_dir() and not list((other / "out").iterdir())


def test_two_machines_detectron2_flags_match_one_process(cifar, tmp_path, one_process):
    folders, _ = _two_machines(tmp_path, cifar, _detectron2_style)
    main, other = _main_and_other(folders)
    assert main == folders[0]  # --machine-rank 0
    _assert_needs_no_files_of(other)
    assert (main / "out" / "pixel_mean.pth").exists()
    diff = _assert_equal_to(one_process, load_checkpoint_file(main / "out" / "model_final.pth")["model"])
    print(f"largest difference from the one-process run: {diff:.2e}")


def test_two_machines_torchrun_c10d_match_one_process(cifar, tmp_path, one_process):
    folders, _ = _two_machines(tmp_path, cifar, _torchrun)
    main, other = _main_and_other(folders)
    _assert_needs_no_files_of(other)
    diff = _assert_equal_to(one_process, load_checkpoint_file(main / "out" / "model_final.pth")["model"])
    print(f"largest difference from the one-process run: {diff:.2e}")


@pytest.mark.slow
def test_resume_after_one_machine_was_killed(cifar, tmp_path, one_process):
    """Machine 1 is killed (SIGKILL: a crash) after machine 0 saved a checkpoint; machine 0 then
    stops with an error; both start again with --resume, machine 1 from an empty folder, and
    continue from machine 0's checkpoint to the one-process run's weights."""
    folders = [_machine(tmp_path, f"m{r}", cifar) for r in (0, 1)]
    port = _free_port()
    procs = [_start(_detectron2_style(port, r), f) for r, f in enumerate(folders)]
    first = folders[0] / "out" / "model_0000000.pth"
    deadline = time.time() + 120
    while not first.exists() and procs[0].poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(procs[1].pid, signal.SIGKILL)
    (code0, err0), _ = _finish(procs, timeout=120)
    assert code0 != 0 and not (folders[0] / "out" / "model_final.pth").exists(), err0[-2000:]
    shutil.rmtree(folders[1])  # the restarted machine has nothing but the dataset
    folders[1] = _machine(tmp_path, "m1", cifar)
    _, errs = _two_machines(tmp_path, cifar, _detectron2_style, "--resume", folders=folders)
    assert re.search(r"resuming at iteration [1-3]\b", errs[0]), errs[0][-3000:]
    _assert_needs_no_files_of(folders[1])
    resumed = load_checkpoint_file(folders[0] / "out" / "model_final.pth")["model"]
    diff = _assert_equal_to(one_process, resumed)
    print(f"largest difference from the one-process run: {diff:.2e}")


def test_machine_that_never_joins_is_named(cifar, tmp_path):
    """Machine 0 alone, a short timeout: one ``error:`` line naming machine 1, exit status 2,
    and the run folder as it was (nothing is written before every machine has joined)."""
    folder = _machine(tmp_path, "m0", cifar)
    (folder / "out").mkdir()
    (folder / "out" / "notes.txt").write_text("kept")
    cmd = _detectron2_style(_free_port(), 0, "--resume")
    cmd[cmd.index("DIST_TIMEOUT_S") + 1] = 2
    [(code, err)] = _finish([_start(cmd, folder)], timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith("error: machine 1 of 2 did not join tcp://127.0.0.1:"), lines[0]
    assert "--machine-rank 1" in lines[0]
    assert [p.name for p in (folder / "out").iterdir()] == ["notes.txt"]


def test_two_machines_check_the_dataset_once(tmp_path):
    """An image folder (ImageNet layout, one unreadable training image, DATALOADER.SKIP_CORRUPT):
    machine 0 checks it and broadcasts the verdict; machine 1 checks nothing (its dataset-check
    cache stays empty) and skips the same image; a copy with other files is named."""
    from helpers import small_imagenet

    source = small_imagenet(tmp_path / "imagenet")
    sorted((source / "train").rglob("*.JPEG"))[0].write_bytes(b"")
    folders = []
    for r in (0, 1):
        folder = tmp_path / f"m{r}"
        shutil.copytree(source, folder / "data" / "imagenet")
        (folder / "cache").mkdir()
        folders.append(folder)
    opts = ["--config-file", REPO / "configs" / "classification" / "imagenet" / "resnet18.yaml",
            "DATASETS.ROOT", "data/imagenet", "DATALOADER.SKIP_CORRUPT", True, "MODEL.NUM_CLASSES", 3,
            "INPUT.TRAIN_SCALE", "[32, 36]", "INPUT.CROP_SIZE", 32, "TEST.RESIZE", 32,
            "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 8, "SOLVER.MAX_ITER", 2,
            "TEST.FINAL_MODES", "['center']", "TEST.EVAL_PERIOD", 2, "DATALOADER.NUM_WORKERS", 0,
            "PROGRESS_BAR", False, "DIST_TIMEOUT_S", 60, "OUTPUT_DIR", "out"]

    def command(port, rank, *extra):
        return _detectron2_style(port, rank)[:-len(OPTS)] + [*extra, *opts]

    _, errs = _two_machines(tmp_path, None, command, folders=folders)
    assert list((folders[0] / "cache").rglob("*.json"))  # machine 0 checked (and cached)
    assert not list((folders[1] / "cache").rglob("*"))  # machine 1 did not
    _assert_needs_no_files_of(folders[1])
    extra = folders[1] / "data" / "imagenet" / "train" / "class0" / "extra.JPEG"
    shutil.copy(next((source / "val" / "class0").glob("*.JPEG")), extra)
    port = _free_port()
    results = _finish([_start(command(port, r, "--overwrite"), f) for r, f in enumerate(folders)],
                      timeout=120)
    code1, err1 = results[1]
    assert code1 != 0 and ("error: DATASETS.ROOT data/imagenet on machine 1 does not hold the "
                           "same train/ files as on machine 0") in err1, err1[-3000:]
