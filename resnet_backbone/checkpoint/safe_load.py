"""Loading a checkpoint file without executing code from it.

* ``load_checkpoint_file``: a torch file (zip or legacy format, whatever its extension) goes
  through ``torch.load(weights_only=True)`` with numeric numpy arrays admitted; a plain pickle
  (MSRA / Caffe2 / detectron2 model-zoo ``.pkl``) goes through ``load_pickle_safely``, an
  unpickler that admits only plain containers, numbers, strings and numpy arrays. Anything else
  raises ``UnsafeCheckpointError`` naming the file and the offending global.

It owns the checkpoint package's exceptions (``CheckpointError``, ``UnsafeCheckpointError``) and
the format sniffing (``_file_kind``) because everything else builds on loading: the completeness
check, atomic saves (which load back what they wrote) and the checkpointers all import them
from here.
"""
import _compat_pickle
import builtins
import collections
import contextlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, or not a checkpoint."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file asks to run code (or build objects) when loaded: refused."""


# --------------------------------------------------------------------------------------------
# Restricted unpickler for .pkl files
# --------------------------------------------------------------------------------------------
_np_core = getattr(np, "_core", None) or np.core  # numpy 2.x moved numpy.core to numpy._core
_LATIN1 = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"}


class _Refused(pickle.UnpicklingError):
    """An admitted global was called with arguments outside plain data; reported as unsafe."""


def _reconstruct_ndarray(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` restricted to plain ``numpy.ndarray``."""
    if subtype is not np.ndarray:
        raise _Refused(f"numpy.core.multiarray._reconstruct of {subtype!r}: only numpy.ndarray "
                       "is allowed")
    return _np_core.multiarray._reconstruct(subtype, shape, dtype)


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol < 3: latin-1 only."""
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1:
        raise _Refused(f"_codecs.encode({type(text).__name__}, {encoding!r}): only latin-1 "
                       "encoding of a str is allowed")
    return text.encode("latin-1", errors)


def _safe_pickle_globals() -> Dict[Tuple[str, str], Any]:
    """(module, name) -> object a ``.pkl`` checkpoint may reference, under both numpy 1.x
    (``numpy.core``) and 2.x (``numpy._core``) module paths. Nothing is imported by name."""
    table: Dict[Tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _latin1_encode,  # how Python 3 stores bytes at protocol 2
    }
    for name in ("set", "frozenset", "slice", "complex", "bytes", "bytearray"):
        table[("builtins", name)] = getattr(builtins, name)
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct_ndarray
        table[(f"{core}.multiarray", "scalar")] = _np_core.multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = _np_core.numeric._frombuffer  # protocol 5
    return table


_SAFE_PICKLE_GLOBALS = _safe_pickle_globals()

_UNSAFE_HINT = ("Loading it could run code from the file, so it is refused. If you trust the "
                "file, convert it once into a state dict of plain tensors / numpy arrays.")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 str -> numpy raw bytes
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__``, ``copy_reg``), as pickle's own find_class maps them.
        key = _compat_pickle.NAME_MAPPING.get(
            (module, name), (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        try:
            return _SAFE_PICKLE_GLOBALS[key]
        except KeyError:
            raise UnsafeCheckpointError(
                f"Refusing to load {self._path}: it references {'.'.join(key)}, which is not "
                f"plain data (containers, numbers, strings, numpy arrays). {_UNSAFE_HINT}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(
            f"Refusing to load {self._path}: it uses pickle persistent ids (torch storages?), "
            f"which are not plain data. {_UNSAFE_HINT}")


def load_pickle_safely(path: os.PathLike) -> Any:
    """Unpickle a ``.pkl`` checkpoint, admitting only plain data and numpy arrays."""
    path = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"Cannot read checkpoint {path}: {e}") from e
    try:
        return _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafeCheckpointError:
        raise
    except _Refused as e:
        raise UnsafeCheckpointError(f"Refusing to load {path}: it calls {e}. {_UNSAFE_HINT}") from e
    except Exception as e:  # any other failure of a restricted load is a bad file, not code
        raise CheckpointError(f"{path} is neither a torch checkpoint nor a readable pickle "
                              f"(truncated or corrupt?): {type(e).__name__}: {e}") from e


# --------------------------------------------------------------------------------------------
# torch files
# --------------------------------------------------------------------------------------------
_ZIP_MAGIC = b"PK\x03\x04"
#: torch's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


def _file_kind(path: Path) -> str:
    """'zip' (torch >= 1.6 format), 'legacy' (old torch format) or 'pickle' (anything else)."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head == _LEGACY_MAGIC:
        return "legacy"
    return "pickle"


def _numpy_admitted():
    """Context in which ``torch.load(weights_only=True)`` also admits numeric numpy arrays
    (torch >= 2.5; older torch admits what it admits)."""
    if not hasattr(torch.serialization, "safe_globals"):
        return contextlib.nullcontext()
    kinds = [type(np.dtype(c)) for c in "?bhilqBHILQefdgFDGSU"] if hasattr(np, "dtypes") else []
    functions = [_np_core.multiarray._reconstruct, _np_core.multiarray.scalar]
    # the same functions under the other numpy major's module path (files saved with numpy 1.x)
    aliases = [(f, f"{core}.multiarray.{f.__name__}") for f in functions
               for core in ("numpy.core", "numpy._core")] if torch.__version__ >= "2.6" else []
    return torch.serialization.safe_globals(  # bytes: how protocol 2 pickles b"" (empty arrays)
        [*functions, *aliases, np.ndarray, np.dtype, *kinds, bytes])


def _offending_global(path: Path, message: str) -> str:
    """The global that made ``torch.load(weights_only=True)`` refuse the file, as a name."""
    match = re.search(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", message)
    if match:
        return match.group(1) or match.group(2)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        names = []
    return ", ".join(names) or "an object weights_only does not admit"


def _load_torch_safely(path: Path, mmap: bool = False) -> Any:
    try:
        with _numpy_admitted():
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        text = str(e)
        # torch 2.x raises UnpicklingError("Weights only load failed ..."); older versions
        # wrapped the same text in a RuntimeError. Anything else is a damaged file.
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it references {_offending_global(path, text)}, which "
                "torch.load(weights_only=True) does not admit (it admits tensors, numbers, "
                f"strings, containers, numpy arrays). {_UNSAFE_HINT}") from e
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt?): "
                              f"{type(e).__name__}: {text}") from e


def load_checkpoint_file(path: os.PathLike) -> Any:
    """Load a checkpoint without executing code from it.

    The format is read from the file's first bytes, not its extension: a torch file (``.pth``,
    ``.pt``, ...) goes through ``torch.load(weights_only=True)`` on the CPU, a plain pickle
    (MSRA / detectron2 ``.pkl``) through :func:`load_pickle_safely`. Raises
    ``UnsafeCheckpointError`` for a file that references code, ``CheckpointError`` for a missing,
    truncated or corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
    try:
        kind = _file_kind(path)
        empty = path.stat().st_size == 0
    except OSError as e:
        raise CheckpointError(f"Cannot read checkpoint {path}: {e}") from e
    if empty:
        raise CheckpointError(f"Checkpoint {path} is empty (a crash while it was written?).")
    if kind == "pickle":
        return load_pickle_safely(path)
    return _load_torch_safely(path)
