"""Checkpoint safety (issue 8): loading never runs code from a file, saving never leaves a torn
file, ``--resume`` skips truncated checkpoints, and a state dict that does not fit says why.

Every malicious payload here is first shown to be real: a plain ``pickle``/``torch.load``
(weights_only=False) of it writes its marker file. Then our loaders must refuse it with
``UnsafeCheckpointError`` naming the file and the offending global, and write nothing.
"""
import argparse
import collections
import errno
import json
import copyreg
import logging
import os
import pickle
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_backbone import checkpoint as ckpt
from resnet_backbone.checkpoint import (
    CheckpointError, UnsafeCheckpointError, checkpoint_is_complete, describe_shape_mismatches,
    latest_complete_checkpoint, load_checkpoint_file, load_pickle_safely, load_state_dict_checked,
    save_checkpoint_atomic, state_dict_from_checkpoint, verify_checkpoint)
from resnet_backbone import create_model

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Writers of legitimate files in the real formats
# --------------------------------------------------------------------------------------------
class _LegacyPickler(pickle._Pickler):
    """The pure-Python pickler, writing numpy globals under numpy 1.x module paths
    (``numpy.core.*``) and, with ``py2=True``, str/bytes as Python 2 ``str`` (BINSTRING),
    which is how the MSRA / Detectron ``.pkl`` files were written."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol, py2=False):
        super().__init__(file, protocol)
        self.py2 = py2

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "")
        if not module.startswith("numpy._core"):
            return super().save_global(obj, name)
        module, name = module.replace("numpy._core", "numpy.core"), name or obj.__qualname__
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    def _save_py2_str(self, data):
        if not self.py2:
            return (pickle._Pickler.save_bytes if isinstance(data, bytes)
                    else pickle._Pickler.save_str)(self, data)
        raw = data if isinstance(data, bytes) else data.encode("latin-1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(data)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _dump(obj, path, style):
    """Write ``obj`` as a pickle: 'py2' (Python 2, protocol 2), 'np1-<p>' (numpy 1.x module
    paths, protocol p) or an int protocol (this Python and numpy)."""
    with open(path, "wb") as f:
        if style == "py2":
            _LegacyPickler(f, 2, py2=True).dump(obj)
        elif isinstance(style, str):
            _LegacyPickler(f, int(style.split("-")[1])).dump(obj)
        else:
            pickle.dump(obj, f, protocol=style)
    return path


def _arrays():
    rng = np.random.default_rng(0)
    return collections.OrderedDict([
        ("conv1_w", rng.standard_normal((64, 3, 7, 7)).astype(np.float32)),
        ("res_conv1_bn_s", rng.standard_normal(64).astype(np.float32)),
        ("fc1000_b", np.zeros(1000, np.float64)),
        ("half", np.arange(6, dtype=np.float16).reshape(2, 3)),
        ("ints", np.arange(5, dtype=np.int64)),
        ("int32", np.arange(5, dtype=np.int32)),
        ("bytes_u8", np.arange(256, dtype=np.uint8)),  # every byte value (latin-1 round trip)
        ("flags", np.array([True, False])),
        ("empty", np.zeros((0, 3), np.float32)),
        ("fortran", np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))),
        ("zero_d", np.array(2.5, np.float32)),
    ])


def _msra(arrays):
    """MSRA ImageNet models (ImageNetPretrained/MSRA/R-50.pkl): a flat dict of caffe2 blobs."""
    return dict(arrays)


def _detectron1(arrays):
    """Detectron (Caffe2) detection models: blobs under "blobs"."""
    return {"blobs": dict(arrays), "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}


def _d2_model_zoo(arrays):
    return {"model": arrays, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True,
            "iteration": np.int64(90000), "lr": np.float32(0.02), "scale": 1.5 + 0.5j,
            "names": ("a", "b"), "ids": {1, 2}}


def _assert_same(loaded, expected):
    """Equal values of the same types (dict vs OrderedDict, numpy dtypes and shapes too)."""
    if isinstance(expected, dict):
        assert type(loaded) is type(expected) and set(loaded) == set(expected)
        for k in expected:
            _assert_same(loaded[k], expected[k])
    elif isinstance(expected, np.ndarray):
        assert isinstance(loaded, np.ndarray) and loaded.dtype == expected.dtype
        assert loaded.shape == expected.shape
        np.testing.assert_array_equal(loaded, expected)
    else:
        assert loaded == expected and type(loaded) == type(expected)


@pytest.mark.parametrize("style", ["py2", "np1-2", "np1-4", 2, 4, 5])
@pytest.mark.parametrize("fmt", [_msra, _detectron1, _d2_model_zoo])
def test_legitimate_pkl_loads(tmp_path, style, fmt):
    """MSRA, Detectron and detectron2 model-zoo .pkl files load, written by Python 2 or 3, numpy 1 or 2,
    pickle protocols 2, 4 and 5 (5 stores arrays through numpy's ``_frombuffer``)."""
    obj = fmt(_arrays())
    path = _dump(obj, tmp_path / "R-50.pkl", style)
    _assert_same(load_checkpoint_file(path), obj)


def test_format_is_read_from_the_bytes_not_the_name(tmp_path):
    """The format is read from the bytes, not the name: a renamed .pkl is still unpickled by
    the restricted unpickler (torch's weights_only would call it unsafe)."""
    obj = _msra(_arrays())
    _assert_same(load_checkpoint_file(_dump(obj, tmp_path / "R-50.pth", 2)), obj)
    torch.save({"w": torch.ones(2)}, tmp_path / "torch.pkl")  # and a torch file named .pkl
    assert torch.equal(load_checkpoint_file(tmp_path / "torch.pkl")["w"], torch.ones(2))


@pytest.mark.parametrize("legacy", [False, True])
def test_legitimate_pth_loads(tmp_path, legacy):
    model = create_model("cifar_resnet20")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    optimizer.step()  # momentum buffers in the optimizer state
    obj = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": 7,
           "numpy": np.arange(4, dtype=np.float32), "rng": torch.get_rng_state(),
           "empty": np.zeros((0, 3), np.float32)}  # pickled through builtins.bytes
    path = tmp_path / "model_0000007.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_checkpoint_file(path)
    assert loaded["iteration"] == 7
    for k, v in obj["model"].items():
        assert torch.equal(loaded["model"][k], v), k
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (16, 3, 3, 3)
    np.testing.assert_array_equal(loaded["numpy"], obj["numpy"])
    assert loaded["empty"].shape == (0, 3)
    assert torch.equal(loaded["rng"], obj["rng"])


def test_pth_with_numpy_1x_arrays_loads(tmp_path):
    """numpy arrays inside a torch file saved under numpy 1.x (``numpy.core`` module paths)."""
    class Pickler(_LegacyPickler):
        def __init__(self, f, protocol=2):
            super().__init__(f, protocol)

    path = tmp_path / "numpy1.pth"
    obj = {"blobs": _arrays(), "t": torch.arange(3)}
    torch.save(obj, path, pickle_module=argparse.Namespace(Pickler=Pickler, __name__="np1"))
    loaded = load_checkpoint_file(path)
    _assert_same(loaded["blobs"], obj["blobs"])
    assert torch.equal(loaded["t"], obj["t"])


# --------------------------------------------------------------------------------------------
# Malicious files: each payload writes a marker file when executed
# --------------------------------------------------------------------------------------------
class _Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch_code(marker):
    return f"open({str(marker)!r}, 'w').close()"


def _payloads(marker):
    """name -> (pickle bytes, global our loader must name). Each writes ``marker`` if run."""
    m = str(marker)
    raw_getattr = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
                   + f"touch {m}".encode() + b"\ntR.")
    raw_inst = b"(V" + f"touch {m}".encode() + b"\nios\nsystem\n."  # protocol 0 INST opcode
    evil_npy = marker.parent / "gadget.npy"
    np.save(evil_npy, np.array([_Reduce(os.system, f"touch {m}")], dtype=object), allow_pickle=True)
    return {
        "os.system": (pickle.dumps({"blobs": _Reduce(os.system, f"touch {m}")}, 2), "posix.system"),
        "eval": (pickle.dumps(_Reduce(eval, _touch_code(m)), 4), "builtins.eval"),
        "exec": (pickle.dumps([_Reduce(exec, _touch_code(m))], 5), "builtins.exec"),
        "subprocess": (pickle.dumps(_Reduce(subprocess.call, ["touch", m]), 2),
                       "subprocess.call"),
        "getattr_import": (raw_getattr, "builtins.getattr"),
        "inst_opcode": (raw_inst, "os.system"),
        "numpy_load": (pickle.dumps(_Reduce(np.load, str(evil_npy), None, True), 2), "numpy.load"),
        "torch_rebuild": (pickle.dumps({"w": torch.ones(2)}, 2), "torch._utils._rebuild_tensor"),
    }


def _run_plain(data, marker):
    """Control: what an ordinary ``pickle.loads`` does with the payload."""
    try:
        out = pickle.loads(data)
        if isinstance(out, np.ndarray):
            out.tolist()
    except Exception:
        pass
    return marker.exists()


@pytest.mark.parametrize("name", ["os.system", "eval", "exec", "subprocess", "getattr_import",
                                  "inst_opcode", "numpy_load", "torch_rebuild"])
def test_malicious_pkl_is_refused_and_writes_nothing(tmp_path, name):
    marker = tmp_path / "PWNED"
    data, offending = _payloads(marker)[name]
    if name != "torch_rebuild":  # a real tensor pickle: no marker, but it rebuilds via torch.load
        assert _run_plain(data, marker), "control: the payload must really write the marker"
        marker.unlink()
    path = tmp_path / "R-50.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    assert str(path) in str(err.value) and offending in str(err.value)
    assert not marker.exists()


def test_refuses_admitted_globals_used_as_gadgets(tmp_path):
    """``_reconstruct`` of a non-ndarray type, ``_codecs.encode`` with a non-latin-1 codec."""
    bad_reconstruct = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n"
                       b"ccollections\nOrderedDict\n)X\x01\x00\x00\x00b\x87R.")
    bad_codec = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00base64\x86R."
    for i, data in enumerate([bad_reconstruct, bad_codec]):
        path = tmp_path / f"bad{i}.pkl"
        path.write_bytes(data)
        with pytest.raises(UnsafeCheckpointError, match="only"):
            load_pickle_safely(path)


class _ReduceTo:
    """An object that pickles as the given ``__reduce__`` tuple."""

    def __init__(self, reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _np_gadgets():
    """Pickles that try to make numpy read raw bytes as object pointers (memory unsafety)."""
    mult, numeric = ckpt._np_core.multiarray, ckpt._np_core.numeric
    obj, struct_obj, raw = np.dtype("O"), np.dtype([("a", "O")]), b"\x41" * 16
    new_array = (mult._reconstruct, (np.ndarray, (0,), b"b"))
    return [
        (*new_array, (1, (2,), obj, False, raw)),
        (*new_array, (1, (1,), struct_obj, False, raw[:8])),
        (mult.scalar, (obj, raw[:8])),
        (mult.scalar, (struct_obj, raw[:8])),
        (numeric._frombuffer, (raw, obj, (2,), "C")),
        (numeric._frombuffer, (raw[:8], struct_obj, (1,), "C")),
    ]


@pytest.mark.parametrize("index", range(6))
def test_numpy_refuses_raw_bytes_as_objects(tmp_path, index):
    """The admitted numpy functions never turn file bytes into object pointers."""
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps(_ReduceTo(_np_gadgets()[index]), 2))
    with pytest.raises(CheckpointError):
        load_checkpoint_file(path)


def test_copyreg_extension_opcode_is_refused(tmp_path):
    """EXT opcodes (copyreg extension registry) resolve through find_class too."""
    marker = tmp_path / "PWNED"
    copyreg.add_extension("posix", "system", 0xBEEF)
    try:
        data = pickle.dumps(_Reduce(os.system, f"touch {marker}"), 2)
        assert pickle.EXT2 in data
        path = tmp_path / "ext.pkl"
        path.write_bytes(data)
        with pytest.raises(UnsafeCheckpointError, match="posix.system"):
            load_checkpoint_file(path)
    finally:
        copyreg.remove_extension("posix", "system", 0xBEEF)
    assert not marker.exists()


def test_persistent_id_in_pkl_is_refused(tmp_path):
    path = tmp_path / "pid.pkl"
    path.write_bytes(b"\x80\x02X\x03\x00\x00\x00abcQ.")  # BINPERSID
    with pytest.raises(UnsafeCheckpointError, match="persistent"):
        load_checkpoint_file(path)


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("gadget", ["os.system", "eval"])
def test_malicious_pth_is_refused_and_writes_nothing(tmp_path, legacy, gadget):
    marker = tmp_path / "PWNED"
    payload = (_Reduce(os.system, f"touch {marker}") if gadget == "os.system"
               else _Reduce(eval, _touch_code(marker)))
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"w": torch.ones(1)}, "extra": payload}, path,
               _use_new_zipfile_serialization=not legacy)
    torch.load(path, weights_only=False)  # control: an unrestricted load runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    message = str(err.value)
    assert message.startswith(f"Refusing to load {path}")
    assert ("system" if gadget == "os.system" else "eval") in message
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Truncated and corrupt files
# --------------------------------------------------------------------------------------------
def _complete_pth(path, value=1.0, size=20000):
    save_checkpoint_atomic({"model": {"w": torch.full((size,), float(value))}, "iteration": 1},
                           path)
    return path


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_pth_is_incomplete_not_unsafe(tmp_path, fraction):
    data = _complete_pth(tmp_path / "full.pth").read_bytes()
    path = tmp_path / "model_0000010.pth"
    path.write_bytes(data[:int(len(data) * fraction)] if fraction else data[:-1])
    assert not checkpoint_is_complete(path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_file(path)
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert str(path) in str(err.value)


def test_corrupt_files_get_clear_errors(tmp_path):
    full = _complete_pth(tmp_path / "full.pth")
    assert checkpoint_is_complete(full) and checkpoint_is_complete(full, deep=True)
    flipped = tmp_path / "flipped.pth"
    data = bytearray(full.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor data: only the CRC check sees it
    flipped.write_bytes(bytes(data))
    assert checkpoint_is_complete(flipped) and not checkpoint_is_complete(flipped, deep=True)
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(100)}, legacy, _use_new_zipfile_serialization=False)
    cut = tmp_path / "legacy_cut.pth"
    cut.write_bytes(legacy.read_bytes()[:-5])
    notzip = tmp_path / "other.pth"
    with zipfile.ZipFile(notzip, "w") as zf:
        zf.writestr("readme.txt", "not a checkpoint")
    cases = {tmp_path / "missing.pth": "does not exist", tmp_path / "empty.pth": "is empty",
             tmp_path / "junk.pth": "neither a torch checkpoint nor a readable pickle",
             cut: "truncated or corrupt", notzip: "truncated or corrupt",
             tmp_path / "cut.pkl": "truncated or corrupt"}
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.pth").write_bytes(b"hello, not a checkpoint")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(_msra(_arrays()), 2)[:-100])
    for path, words in cases.items():
        with pytest.raises(CheckpointError, match=words) as err:
            load_checkpoint_file(path)
        assert not isinstance(err.value, UnsafeCheckpointError), path
        assert str(path) in str(err.value)
        assert not checkpoint_is_complete(path)
    with pytest.raises(CheckpointError, match="empty"):
        verify_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no data.pkl"):
        verify_checkpoint(notzip)


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
    import importlib.util, os, sys, time, torch
    out, pause_at, module_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    # the module alone, without the package (whose __init__ imports detectron2: seconds)
    spec = importlib.util.spec_from_file_location("checkpoint", module_file)
    checkpoint = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checkpoint)
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
# Resume: newest complete checkpoint
# --------------------------------------------------------------------------------------------
def test_latest_complete_checkpoint_skips_truncated(tmp_path, caplog):
    assert latest_complete_checkpoint(tmp_path / "nowhere") is None
    assert latest_complete_checkpoint(tmp_path) is None
    for it in (99, 100, 1000):  # numeric order, not string order
        _complete_pth(tmp_path / f"model_{it}.pth", value=it, size=100)
    newest = str(tmp_path / "model_1000.pth")
    assert latest_complete_checkpoint(tmp_path, "model_*.pth") == newest
    data = (tmp_path / "model_1000.pth").read_bytes()
    (tmp_path / "model_2000.pth").write_bytes(data[: len(data) // 2])  # a crash mid-write
    (tmp_path / ".model_3000.pth.abc.tmp").write_bytes(data)  # a temp file is never resumed
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.checkpoint"):
        assert latest_complete_checkpoint(tmp_path, "model_*.pth") == newest
    assert "model_2000.pth" in caplog.text and "truncated" in caplog.text
    _complete_pth(tmp_path / "model_final.pth", size=100)  # written after all numbered ones
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "model_final.pth")
    shutil.copy(tmp_path / "model_100.pth", tmp_path / "model_1000_b.pth")  # same number: mtime
    os.utime(tmp_path / "model_1000_b.pth", (time.time() + 5, time.time() + 5))
    assert latest_complete_checkpoint(tmp_path, "model_1*.pth").endswith("model_1000_b.pth")


# --------------------------------------------------------------------------------------------
# Applying a state dict
# --------------------------------------------------------------------------------------------
def test_shape_mismatch_lists_names_and_shapes():
    model = create_model("cifar_resnet20", num_classes=10)
    other = create_model("cifar_resnet20", num_classes=100).state_dict()
    table = describe_shape_mismatches(model.state_dict(), other)
    assert "linear.weight" in table and "10x64" in table and "100x64" in table
    assert "linear.bias" in table and "res2.0.conv1.weight" not in table
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(model, other, source="c100.pth")
    assert "c100.pth" in str(err.value) and "100x64" in str(err.value)
    assert describe_shape_mismatches(model.state_dict(), model.state_dict()) == ""


def test_missing_and_unexpected_keys(tmp_path, caplog):
    model = create_model("cifar_resnet20")
    state = {k: v.clone() + 1 for k, v in model.state_dict().items()}
    state.pop("linear.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_checked(model, state)
    # one table row each: what the model has and the checkpoint lacks, and the other way round
    assert re.search(r"\| missing\s+\| linear\.bias\s+\|", str(err.value)), str(err.value)
    assert re.search(r"\| unexpected\s+\| extra\.weight\s+\|", str(err.value)), str(err.value)
    assert str(err.value).count("\n| ") == 3  # header + the two rows
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.checkpoint"):
        result = load_state_dict_checked(model, state, strict=False)
    assert result.missing_keys == ["linear.bias"] and result.unexpected_keys == ["extra.weight"]
    assert "linear.bias" in caplog.text
    assert torch.equal(model.state_dict()["linear.weight"], state["linear.weight"])


def test_state_dict_from_checkpoint_and_numpy_values(tmp_path):
    model = create_model("cifar_resnet20")
    ref = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    ddp = {"model": {"module." + k: v for k, v in ref.items()}, "iteration": 3}
    path = _dump(ddp, tmp_path / "ddp.pkl", 4)
    state, container = state_dict_from_checkpoint(load_checkpoint_file(path), path)
    assert set(state) == set(ref) and container == "model"
    fresh = create_model("cifar_resnet20")
    load_state_dict_checked(fresh, state)
    for k, v in fresh.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), ref[k])
    with pytest.raises(CheckpointError, match="no state dict"):
        state_dict_from_checkpoint([1, 2], "list.pth")


def test_public_names_kept():
    assert issubclass(UnsafeCheckpointError, CheckpointError)
    assert issubclass(CheckpointError, RuntimeError)
    assert set(ckpt.__all__) <= set(dir(ckpt))


# --------------------------------------------------------------------------------------------
# Faults while writing: the previous files stay, the error says what happened
# --------------------------------------------------------------------------------------------
def _checkpointer(tmp_path):
    from resnet_backbone.checkpoint import SafeCheckpointer
    return SafeCheckpointer(torch.nn.Linear(4, 2), str(tmp_path))


def test_full_disk_during_a_save_keeps_the_previous_checkpoint_and_tag(tmp_path, monkeypatch):
    checkpointer = _checkpointer(tmp_path)
    checkpointer.save("model_0000009", iteration=9)
    before = (tmp_path / "model_0000009.pth").read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)  # the data is written, then cannot be synced
    with pytest.raises(CheckpointError, match="model_0000019.pth failed .No space left on device"):
        checkpointer.save("model_0000019", iteration=19)
    monkeypatch.undo()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert (tmp_path / "model_0000009.pth").read_bytes() == before
    assert not (tmp_path / "model_0000019.pth").exists()
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]  # no temp
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 9


def test_unwritable_folder_is_said(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match=r"cannot write .*model.pth: Permission denied \(nothing was changed\)"):
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
