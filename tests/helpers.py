"""Helpers shared by tests of several layers (``import helpers``: tests/ is on sys.path through
its conftest.py)."""
import functools
import importlib
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def randomize_norms_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial statistics and affine parameters in every BN and FrozenBN (ours, torchvision's,
    detectron2's), so that a mis-mapped, unloaded or badly folded norm layer shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) or type(m).__name__ == "FrozenBatchNorm2d":
            n = m.running_mean.numel()
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def assert_same_state(a, b) -> None:
    """Two state dicts (tensors or numpy arrays) with the same names and equal values."""
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k


def assert_float_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding: the same convolutions may run different (equally exact)
    oneDNN algorithms, so deep outputs agree to ~1e-5 of their scale, not bit for bit."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max absolute difference relative to the reference's largest value. Measured on R-50 with
    ``randomize_norms_`` (2026-11-23, AMD EPYC; AVX-512, AVX2 and one-thread kernels): fp32 fast
    paths at most 7.2e-7 (bound 1e-4); bf16 autocast 0.0035, the bf16 fast path 0.0054 (bound
    5e-2)."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# --- running the tools -------------------------------------------------------------------------

#: The cores of one test process: CI's 2, or 1 each when pytest-xdist runs the suite in two
#: workers (the README's ``-n 2``). The threads of a tool a test starts (``OMP_NUM_THREADS``):
#: two 2-thread processes on 2 cores wait on each other's parallel regions (several times
#: slower), two 1-thread ones do not.
TOOL_THREADS = max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 1))))


def run_tool(tool_or_script, *args, cwd=None, env=None, timeout=300, check=False, threads=1):
    """``python <script> args...`` as a user runs it, in a subprocess: ``tool_or_script`` is a
    tool's name (``"train_cls"``: ``tools/train_cls.py``) or the path of a script; ``args`` are
    converted with ``str``; stdout and stderr are captured as text. ``OMP_NUM_THREADS`` is
    ``threads`` (one thread is faster than two for small inputs on a shared machine); ``env`` is
    merged into ``os.environ`` after it. With ``check``, asserts exit status 0, showing the end
    of stderr. Returns the ``CompletedProcess``."""
    path = Path(tool_or_script)
    if path.suffix != ".py" and len(path.parts) == 1:
        path = REPO / "tools" / f"{path}.py"
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def in_parallel(*calls, workers=2):
    """Call independent zero-argument functions (each typically runs a tool in a subprocess)
    ``workers`` at a time, on threads: CI has 2 cores and a tool's start-up (imports) or a
    one-thread run takes one. Returns their results in order; once all have ended, the first
    exception raised is raised again."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(call) for call in calls]
    return [future.result() for future in futures]


def tool_main(name):
    """The tool's ``main`` (what ``tools/<name>.py`` and ``resnet-<name>`` run)."""
    return importlib.import_module(f"resnet_backbone.cli.{name}").main


#: The first bytes of a PNG file.
PNG = b"\x89PNG\r\n\x1a\n"


# --- models and export -------------------------------------------------------------------------

needs_onnx = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript")),
    reason="the [onnx] extra (onnx, onnxruntime, onnxscript) is not installed")


def script(model):
    """``torch.jit.script(model)`` without torch's deprecation warning."""
    with warnings.catch_warnings():  # TorchScript is deprecated in torch >= 2.10; users still script
        warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
        return torch.jit.script(model)


def blocks_of(model: nn.Module):
    """The residual / plain blocks of a network, in order."""
    from resnet_backbone.models.blocks import BasicBlock, BottleneckBlock
    return [m for m in model.modules() if isinstance(m, (BasicBlock, BottleneckBlock))]


@functools.lru_cache(maxsize=None)
def analyze_model_tables():
    """``analyze_model.py --table --json`` (Table 1 and Table 6), run once per session in this
    process (about 20 s on 2 cores)."""
    import contextlib
    import io
    import json

    from resnet_backbone.cli import analyze_model
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert analyze_model.main(["--table", "--json"]) == 0
    return json.loads(out.getvalue())


# --- classification training -------------------------------------------------------------------

#: A tiny classification run (synthetic data, ResNet-20): the trainer's tests and train_cls's.
CLS_TINY = ["DATASETS.SYNTHETIC.NUM_TRAIN", 96, "DATASETS.SYNTHETIC.NUM_TEST", 16,
            "SOLVER.IMS_PER_BATCH", 16, "SOLVER.STEPS", (3, 5), "DATALOADER.NUM_WORKERS", 0,
            "PROGRESS_BAR", False, "LOG_PERIOD", 2, "TEST.EVAL_PERIOD", 4]


def cls_cfg_with(out, *opts):
    """The classification config of ``CLS_TINY`` writing to ``out``, with ``opts`` merged."""
    from resnet_backbone.classification.config import get_cls_cfg
    cfg = get_cls_cfg()
    cfg.merge_from_list(CLS_TINY + ["OUTPUT_DIR", str(out)] + list(opts))
    return cfg


def final_err(folder: Path) -> float:
    """The center-crop top-1 error of a finished train_cls run (its final_results.json)."""
    import json
    return json.loads((folder / "final_results.json").read_text())["val/center"]["top1_err"]


def write_synthetic_imagenet(root: Path, train: int, val: int, train_size, val_size) -> Path:
    """``root/train`` and ``root/val`` in ImageNet's folder layout: ``train`` and ``val``
    synthetic JPEGs of 3 classes, (width, height) ``train_size`` and ``val_size``."""
    from resnet_backbone.data.synthetic import make_synthetic, write_image_folder
    write_image_folder(root, "train", make_synthetic(train, num_classes=3, seed=2), size=train_size)
    write_image_folder(root, "val", make_synthetic(val, num_classes=3, seed=3), size=val_size)
    return root


def small_imagenet(root, train=12, val=6):
    """A tiny ImageNet-layout folder (classes class0..2, 40x32 JPEGs); its root."""
    return write_synthetic_imagenet(root, train, val, (40, 32), (40, 32))


def spoil_images(split_folder):
    """An empty file, a JPEG cut in half (its header intact) and a file that is no image: the
    first three JPEGs of ``split_folder``, returned."""
    files = sorted(split_folder.rglob("*.JPEG"))
    files[0].write_bytes(b"")
    whole = files[1].read_bytes()
    files[1].write_bytes(whole[:len(whole) // 2])
    files[2].write_bytes(b"\xff\xd8 not a jpeg")
    return files[:3]


# --- the detection demo ------------------------------------------------------------------------

#: The demo with a shorter schedule (the full one: 300 iterations) must still detect on held-out
#: images. Measured by ``python scripts/measure_test_margins.py --workloads det --seeds 0 1``
#: (2026-11-23, AMD EPYC, version 0.2 with the resumable detection loader): AP50 87.6 / 87.8
#: (default and AVX2 ATen kernels), 87.1 / 76.7 (AVX2 in oneDNN too), 82.0 / 85.5 (one
#: thread); worst 76.7. Untrained: ~0. (Bounded in tests/cli/test_train_det.py.)
SHORT_DEMO = ["SOLVER.MAX_ITER", "120", "SOLVER.STEPS", "(100,)", "SOLVER.WARMUP_ITERS", "30",
              "SOLVER.CHECKPOINT_PERIOD", "1000"]
SHORT_DEMO_MIN_AP50 = 50.0


def run_short_demo(out: Path):
    """``python tools/train_det.py`` with no config and the short schedule, writing to ``out``:
    synthetic data, training, COCO evaluation (~95 s on 2 idle cores). Returns the
    ``CompletedProcess``; asserts exit status 0."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "train_det.py"), *SHORT_DEMO,
                           "OUTPUT_DIR", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "OMP_NUM_THREADS": str(TOOL_THREADS)})
    assert proc.returncode == 0, f"train_det.py failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


# --- two "machines" on this host ----------------------------------------------------------------
# A multi-machine job without a shared filesystem: a group of processes per machine, each in its
# own working folder (cwd) with its own copy of the data and its own $XDG_CACHE_HOME, joined by
# gloo over 127.0.0.1. Every machine runs the same command: relative paths, resolved in its folder.


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_folder(base: Path, name: str, data: Path) -> Path:
    """``base/name``: a machine's working folder with its own copy of ``data`` (at
    ``data/<data's name>``) and its own cache folder."""
    import shutil

    folder = base / name
    shutil.copytree(data, folder / "data" / data.name)
    (folder / "cache").mkdir()
    return folder


def two_machine_folders(base: Path, data: Path):
    """``base/m0`` and ``base/m1``, each with its copy of ``data`` (``machine_folder``)."""
    return [machine_folder(base, f"m{r}", data) for r in (0, 1)]


def start_machine(cmd, folder: Path) -> subprocess.Popen:
    """``cmd`` in ``folder``, one thread a process, with the folder's cache and no launcher
    variables of the test's own environment; its own process group (to kill it whole)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(folder / "cache")}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.Popen([str(c) for c in cmd], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish_machines(procs, timeout=180):
    """(returncode, stderr, stdout) of each process; one still running after ``timeout`` is
    killed."""
    import signal

    ended = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
        ended.append((p.returncode, err, out))
    return ended


def detectron2_style(tool: Path, port: int, rank: int, *args):
    """``tool`` as machine ``rank`` of 2 with detectron2's flags (one process a machine)."""
    return [sys.executable, tool, "--num-machines", 2, "--machine-rank", rank, "--dist-url",
            f"tcp://127.0.0.1:{port}", "--num-gpus", 1, *args]


def torchrun_style(tool: Path, port: int, rank: int, *args):
    """``tool`` under ``torchrun --nnodes 2`` (c10d rendezvous at 127.0.0.1:``port``)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", 2, "--nproc-per-node", 1,
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--node-rank", rank,
            "--rdzv-id", "t", tool, *args]


def run_two_machines(folders, command, *args, timeout=180):
    """``command(port, rank, *args)`` on the two machines' folders, together; asserts that both
    end with exit status 0. Their output (stdout, then stderr)."""
    port = free_port()
    results = finish_machines([start_machine(command(port, r, *args), f)
                               for r, f in enumerate(folders)], timeout=timeout)
    for code, err, _ in results:
        assert code == 0, err[-3000:]
    return [out + err for _, err, out in results]


def machine_with_outputs(folders, final: str):
    """(machine 0's folder, the other's): the one whose ``out/`` holds ``final`` (under c10d,
    torchrun numbers the machines in the order they join)."""
    done = [f for f in folders if (f / "out" / final).exists()]
    assert len(done) == 1, "exactly one machine writes the outputs"
    return done[0], next(f for f in folders if f != done[0])


def crash_machine_1_and_resume(base: Path, data: Path, command, *, timeout=180):
    """Two machines (``base/m0``, ``base/m1``, each with its copy of ``data``) start
    ``command(port, rank)``; once machine 0 has saved its first checkpoint, machine 1 is killed
    (SIGKILL: a crash). Machine 0 must then stop with an error, before its final model. Machine
    1 restarts from an empty folder (nothing but its copy of the data) and both run again with
    ``--resume``. Returns (the folders, the resumed run's output of each)."""
    import shutil
    import signal
    import time

    folders = two_machine_folders(base, data)
    port = free_port()
    procs = [start_machine(command(port, r), f) for r, f in enumerate(folders)]
    first = folders[0] / "out" / "model_0000000.pth"
    deadline = time.time() + timeout
    while not first.exists() and procs[0].poll() is None:
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(procs[1].pid, signal.SIGKILL)
    (code0, err0, _), _ = finish_machines(procs, timeout=120)
    assert code0 != 0 and not (folders[0] / "out" / "model_final.pth").exists(), err0[-2000:]
    shutil.rmtree(folders[1])
    folders[1] = machine_folder(base, "m1", data)
    return folders, run_two_machines(folders, command, "--resume", timeout=timeout)
