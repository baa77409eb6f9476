"""Writers of legitimate checkpoint files in the real formats, shared by the tests of
``resnet_backbone.checkpoint``'s modules (``from checkpoint_helpers import ...``: pytest puts
this folder on sys.path; a name of its own, so it does not shadow ``tests/helpers.py``)."""
import collections
import pickle
import struct

import numpy as np
import torch

from resnet_backbone.checkpoint import save_checkpoint_atomic


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


# --------------------------------------------------------------------------------------------
# Truncated and corrupt files
# --------------------------------------------------------------------------------------------
def _complete_pth(path, value=1.0, size=20000):
    save_checkpoint_atomic({"model": {"w": torch.full((size,), float(value))}, "iteration": 1},
                           path)
    return path
