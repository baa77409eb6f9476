"""Reading and writing checkpoints without executing code from them and without losing them.

* ``load_checkpoint_file``: ``.pth``/``.pt`` through ``torch.load(weights_only=True)``; ``.pkl``
  (MSRA / detectron2 / Caffe2 style) through an unpickler that admits only plain containers,
  numbers, strings and numpy arrays. Anything else raises ``UnsafeCheckpointError``.
* ``save_checkpoint_atomic``: write to a temporary file in the same folder, fsync, rename, so a
  crash never leaves a truncated file under the final name.
"""
import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file asks to run code (or build objects) when loaded: refused."""


#: (module, name) pairs a ``.pkl`` checkpoint may reference: numpy arrays and their dtypes,
#: and the builtins pickle uses for plain data.
_SAFE_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("_codecs", "encode"),  # how Python 2 pickles (the MSRA files) store bytes
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"Refusing to load {self._path}: it references {module}.{name}, which is not plain "
            "data (containers, numbers, strings, numpy arrays). Loading it could run code from "
            "the file. If you trust it, convert it to a state dict with plain tensors/arrays.")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"Refusing to load {self._path}: persistent ids are not plain data.")


def load_pickle_safely(path: os.PathLike) -> Any:
    """Unpickle a ``.pkl`` checkpoint, admitting only plain data and numpy arrays."""
    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is not a readable pickle checkpoint "
                              f"(truncated or corrupt?): {e}") from e


def load_checkpoint_file(path: os.PathLike) -> Any:
    """Load a checkpoint by its extension without executing code from it.

    ``.pkl``: restricted unpickler. Anything else (``.pth``, ``.pt``, ``.ckpt``, ...):
    ``torch.load(weights_only=True)`` on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
    if path.suffix == ".pkl":
        return load_pickle_safely(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"Refusing to load {path}: it holds objects that torch.load(weights_only=True) does "
            f"not admit, so loading it could run code from the file. Detail: {e}") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): {e}") from e


def save_checkpoint_atomic(obj: Any, path: os.PathLike) -> str:
    """``torch.save`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)
