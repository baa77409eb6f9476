"""Checkpoint safety (issue 8), ``resnet_backbone.checkpoint.safe_load``: loading never runs code
from a file, and legitimate files in the real formats load.

Every malicious payload here is first shown to be real: a plain ``pickle``/``torch.load``
(weights_only=False) of it writes its marker file. Then our loaders must refuse it with
``UnsafeCheckpointError`` naming the file and the offending global, and write nothing."""
import argparse
import copyreg
import os
import pickle
import subprocess

import numpy as np
import pytest
import torch

from resnet_backbone import checkpoint as ckpt
from resnet_backbone.checkpoint import (
    CheckpointError, UnsafeCheckpointError, load_checkpoint_file, load_pickle_safely)
from resnet_backbone import create_model

from checkpoint_helpers import _arrays, _dump, _LegacyPickler, _msra


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
