"""Checkpoint safety (issue 8), ``resnet_backbone.checkpoint.atomic``: saving never leaves a torn
file (a SIGKILL mid-write included), a failed write keeps the previous file and says why, and
metrics lines are written whole."""
import argparse
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_backbone import checkpoint as ckpt
from resnet_backbone.checkpoint import (
    CheckpointError, latest_complete_checkpoint, load_checkpoint_file, save_checkpoint_atomic,
    verify_checkpoint)

from checkpoint_helpers import _complete_pth

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Atomic saves
# --------------------------------------------------------------------------------------------
def test_atomic_save_writes_fsyncs_and_leaves_no_temp(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.fstat(fd).st_mode),
                                                 real_fsync(fd)))
    path = tmp_path / "sub" / "model_0000001.pth"
    assert save_checkpoint_atomic({"w": torch.arange(3)}, path) == str(path)
    assert torch.equal(load_checkpoint_file(path)["w"], torch.arange(3))
    assert os.listdir(path.parent) == [path.name]
    assert [stat.S_ISREG(m) for m in synced] == [True, False]  # the file, then its folder
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as torch.save would, not 0600


def test_failed_save_keeps_old_file_and_removes_temp(tmp_path, monkeypatch):
    path = _complete_pth(tmp_path / "last.pth", value=1)
    before = path.read_bytes()
    real_save = torch.save

    def crash_midway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(f.tell() // 2)  # half a file on disk, then the process "fails"
        raise KeyboardInterrupt("simulated crash while writing")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_atomic({"model": {"w": torch.full((20000,), 2.0)}}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pth"]

    with pytest.raises(CheckpointError, match="Namespace") as err:  # would not load back safely
        save_checkpoint_atomic({"model": {}, "args": argparse.Namespace(lr=0.1)}, path)
    assert "vars(args)" in str(err.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pth"]


_WRITER = textwrap.dedent("""
    import importlib, os, sys, time, types, torch
    out, pause_at, module_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # the checkpoint package alone, without resnet_backbone's __init__ (which imports the models:
    # seconds): an empty parent package stands in for it
    parent = types.ModuleType("resnet_backbone")
    parent.__path__ = [os.path.dirname(os.path.dirname(module_file))]
    sys.modules["resnet_backbone"] = parent
    checkpoint = importlib.import_module("resnet_backbone.checkpoint")
    save_checkpoint_atomic = checkpoint.save_checkpoint_atomic
    real_save = torch.save

    def slow_save(obj, f, *a, **k):  # at iteration pause_at: stop half-way through the write
        class Half:
            def __init__(self, f): self.f = f
            def write(self, b):
                b = memoryview(b).cast("B")
                if len(b) > 1_000_000:  # the tensor data: write half of it, then hang
                    self.f.write(b[: len(b) // 2]); self.f.flush()
                    print("PAUSED", flush=True); time.sleep(600)
                return self.f.write(b)
            def __getattr__(self, name): return getattr(self.f, name)
        return real_save(obj, Half(f) if it == pause_at else f, *a, **k)

    torch.save = slow_save
    it = 0
    while True:
        state = {"model": {"w": torch.full((2_000_000,), float(it))}, "iteration": it}
        save_checkpoint_atomic(state, os.path.join(out, "last_checkpoint.pth"))
        save_checkpoint_atomic(state, os.path.join(out, f"model_{it:07d}.pth"))
        print("SAVED", it, flush=True)
        it += 1
""")


def _start_writer(out, pause_at):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(pause_at), ckpt.__file__],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO))


def _assert_untorn(path):
    """``path`` is complete and holds one iteration's tensor, never a mix."""
    verify_checkpoint(path, deep=True)
    state = load_checkpoint_file(path)
    w = state["model"]["w"]
    assert torch.all(w == state["iteration"]), "torn checkpoint: values from two iterations"
    return state["iteration"]


def test_sigkill_mid_write_never_leaves_a_torn_checkpoint(tmp_path):
    """Kill -9 a process half-way through writing a 8 MB checkpoint: the final names hold the
    previous complete checkpoints, and ``latest_complete_checkpoint`` resumes from them."""
    proc = _start_writer(tmp_path, pause_at=2)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert lines == ["SAVED 0", "SAVED 1", "PAUSED"]
    temps = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(temps) == 1 and os.path.getsize(tmp_path / temps[0]) > 4_000_000  # the torn one
    assert _assert_untorn(tmp_path / "last_checkpoint.pth") == 1
    latest = latest_complete_checkpoint(tmp_path, "model_*.pth")
    assert latest == str(tmp_path / "model_0000001.pth") and _assert_untorn(latest) == 1


def test_sigkill_at_random_times_never_leaves_a_torn_checkpoint(tmp_path):
    delay = float(np.random.default_rng().uniform(0.0, 1.0))
    proc = _start_writer(tmp_path, pause_at=-1)
    try:
        assert proc.stdout.readline().strip() == "SAVED 0"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    last = _assert_untorn(tmp_path / "last_checkpoint.pth")
    latest = latest_complete_checkpoint(tmp_path, "model_*.pth")
    # last_checkpoint is written before model_<it> in each iteration
    assert _assert_untorn(latest) in (last - 1, last), f"killed {delay:.2f} s after SAVED 0"


# --------------------------------------------------------------------------------------------
# Faults while writing: the previous files stay, the error says what happened
# --------------------------------------------------------------------------------------------

def test_unwritable_folder_is_said(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match=r"cannot write .*model.pth: Permission denied \(nothing was changed\)"):
        save_checkpoint_atomic({"w": torch.ones(1)}, tmp_path / "model.pth")


def test_a_full_disk_is_named_whatever_torch_says(tmp_path, monkeypatch):
    """torch.save on a full disk raises "[enforce fail at inline_container.cc] unexpected pos";
    the error names the full disk (the free space is read from the file system)."""
    from resnet_backbone.checkpoint import atomic

    path = _complete_pth(tmp_path / "model.pth", value=1)
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"x" * (3 << 20))
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 3145728 vs 3145600")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(atomic, "_free_bytes", lambda d: 1 << 20)
    with pytest.raises(CheckpointError, match=r"writing .*model.pth failed \(No space left on device: 1 "
                                              r"MiB free in .* after 3 MiB written; free some space"):
        save_checkpoint_atomic({"w": torch.ones(1)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.pth"]
    monkeypatch.setattr(atomic, "_free_bytes", lambda d: 10 << 30)  # space left: torch's words
    with pytest.raises(CheckpointError, match=r"RuntimeError: \[enforce fail"):
        save_checkpoint_atomic({"w": torch.ones(1)}, path)


def test_a_file_system_turned_read_only_is_the_error_not_the_clean_up(tmp_path, monkeypatch):
    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(torch, "save", read_only)
    monkeypatch.setattr(os, "unlink", read_only)  # the temporary file cannot be removed either
    with pytest.raises(CheckpointError, match=r"writing .*model.pth failed \(Read-only file system\)"):
        save_checkpoint_atomic({"w": torch.ones(1)}, tmp_path / "model.pth")


def test_metrics_lines_are_whole_and_cut_back_on_resume(tmp_path):
    from resnet_backbone.checkpoint import append_text, keep_json_lines
    path = tmp_path / "metrics.json"
    for it in range(5):
        append_text(path, json.dumps({"iteration": it, "loss": 1.0 / (it + 1)}) + "\n")
    with open(path, "a") as f:
        f.write('{"iteration": 5, "lo')  # as a writer killed mid-line (not ours) leaves it
    rows = keep_json_lines(path, lambda row: row["iteration"] < 3)
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [0, 1, 2]
