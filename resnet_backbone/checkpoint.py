"""Reading and writing checkpoints without executing code from them and without losing them.

Loading never runs code from the file:

* ``load_checkpoint_file``: a torch file (zip or legacy format, whatever its extension) goes
  through ``torch.load(weights_only=True)`` with numeric numpy arrays admitted; a plain pickle
  (MSRA / Caffe2 / detectron2 model-zoo ``.pkl``) goes through ``load_pickle_safely``, an
  unpickler that admits only plain containers, numbers, strings and numpy arrays. Anything else
  raises ``UnsafeCheckpointError`` naming the file and the offending global.

Saving never loses the previous checkpoint:

* ``save_checkpoint_atomic``: ``torch.save`` to a temporary file in the same folder, fsync,
  check that it loads back safely, rename over the final name, fsync the folder. A crash at
  any point leaves either the old file or the new one under the final name, never a torn one.
* ``verify_checkpoint`` / ``checkpoint_is_complete``: cheap completeness check (a zip file
  truncated mid-write has no central directory), used by ``latest_complete_checkpoint`` to pick
  what ``--resume`` continues from.

Applying a state dict with a clear error:

* ``state_dict_from_checkpoint``, ``describe_shape_mismatches``, ``load_state_dict_checked``.
"""
import _compat_pickle
import builtins
import collections
import contextlib
import io
import logging
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import torch
from tabulate import tabulate

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "load_pickle_safely", "load_checkpoint_file",
    "save_checkpoint_atomic", "verify_checkpoint", "checkpoint_is_complete",
    "latest_complete_checkpoint", "state_dict_from_checkpoint", "describe_shape_mismatches",
    "load_state_dict_checked",
]


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


# --------------------------------------------------------------------------------------------
# Completeness, atomic saves, resume
# --------------------------------------------------------------------------------------------
def verify_checkpoint(path: os.PathLike, *, deep: bool = False) -> None:
    """Raise ``CheckpointError`` unless ``path`` is a complete checkpoint.

    A torch zip file is checked cheaply: its central directory (written last) must be present
    and every member must lie inside the file, so a file cut off mid-write fails. ``deep=True``
    also checks every member's CRC and loads it safely. Other formats have no index, so they
    are loaded safely in full.
    """
    path = Path(path)
    try:
        size, kind = path.stat().st_size, _file_kind(path)
    except OSError as e:
        raise CheckpointError(f"Checkpoint {path} cannot be read: {e}") from e
    if size == 0:
        raise CheckpointError(f"Checkpoint {path} is empty (a crash while it was written?).")
    if kind != "zip":
        load_checkpoint_file(path)
        return
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
                raise CheckpointError(f"{path} is a zip file but not a torch checkpoint "
                                      "(no data.pkl).")
            for info in infos:
                if info.header_offset + info.compress_size > size:
                    raise CheckpointError(f"{path} is truncated: member {info.filename} ends past "
                                          "the end of the file.")
            bad = zf.testzip() if deep else None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt (a crash while it was written?): "
                              f"{e}") from e
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: member {bad} fails its CRC check.")
    if deep:
        load_checkpoint_file(path)


def checkpoint_is_complete(path: os.PathLike, *, deep: bool = False) -> bool:
    """True if :func:`verify_checkpoint` accepts ``path``."""
    try:
        verify_checkpoint(path, deep=deep)
    except CheckpointError:
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (other threads may be
    creating files); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _write_atomic(path: os.PathLike, write: Callable[[Any], None],
                  verify: Optional[Callable[[Path], None]]) -> str:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync it, run
    ``verify(tmp_path)``, rename it over ``path`` and fsync the folder. On any failure the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; torch.save's mode
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return str(path)


def save_checkpoint_atomic(obj: Any, path: os.PathLike, *, verify: bool = True) -> str:
    """``torch.save`` ``obj`` to ``path`` so that a crash never leaves a torn file there.

    Writes a temporary file beside ``path``, fsyncs it, and (``verify=True``) checks that it
    loads back through :func:`load_checkpoint_file` (memory-mapped, so only the pickle is
    read): a checkpoint holding objects that a safe load refuses fails *now*, with
    ``CheckpointError``, instead of at resume time. Then renames it over ``path`` and fsyncs
    the folder. On any failure the temporary file is removed and ``path`` is untouched.
    Returns ``str(path)``.
    """
    return _write_atomic(path, lambda f: torch.save(obj, f),
                         (lambda tmp: _verify_saved(tmp, Path(path))) if verify else None)


def save_pickle_atomic(obj: Any, path: os.PathLike) -> str:
    """A plain pickle (protocol 2: what detectron2 and the Python 2 Detectron read), written
    like :func:`save_checkpoint_atomic` and read back through the restricted unpickler before
    it replaces ``path``. Returns ``str(path)``."""
    return _write_atomic(path, lambda f: pickle.dump(obj, f, protocol=2), load_checkpoint_file)


def _verify_saved(tmp: Path, final: Path) -> None:
    """Complete, and loads back through the safe path (memory-mapped: only the pickle is read;
    without mmap where the file system cannot map files)."""
    verify_checkpoint(tmp)
    try:
        try:
            _load_torch_safely(tmp, mmap=True)
        except UnsafeCheckpointError:
            raise
        except CheckpointError:
            _load_torch_safely(tmp)
    except UnsafeCheckpointError as e:
        raise CheckpointError(
            f"Not saving {final}: it would not load back safely, because it holds "
            f"{_offending_global(tmp, str(e.__cause__))}. Save only tensors, numbers, strings, "
            "containers and numpy arrays (e.g. vars(args) instead of an argparse.Namespace).") from e


_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def _resume_order(path: Path) -> Tuple[int, float, float]:
    """Sort key: files with an iteration number by that number, then files without one (such
    as ``model_final.pth`` or ``last.pth``, written after the numbered ones), then mtime."""
    match = _NUMBER.search(path.stem)
    try:
        mtime = path.stat().st_mtime
    except OSError:  # deleted meanwhile (old checkpoints are pruned): verify_checkpoint says so
        mtime = 0.0
    return (0, float(match.group(1)), mtime) if match else (1, 0.0, mtime)


def latest_complete_checkpoint(directory: os.PathLike, pattern: str = "*.pth") -> Optional[str]:
    """The newest complete checkpoint in ``directory`` matching ``pattern``, or None.

    Newest means the highest iteration number in the file name (the last integer in the stem),
    then files without a number, then the latest mtime. Truncated or corrupt files (a crash
    mid-write) and temporary files of :func:`save_checkpoint_atomic` are skipped with a warning.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    candidates = [p for p in directory.glob(pattern)
                  if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))]
    for path in sorted(candidates, key=_resume_order, reverse=True):
        try:
            verify_checkpoint(path)
        except CheckpointError as e:
            logger.warning("Skipping incomplete checkpoint for resume: %s", e)
            continue
        return str(path)
    return None


# --------------------------------------------------------------------------------------------
# Applying a state dict
# --------------------------------------------------------------------------------------------
def state_dict_from_checkpoint(obj: Any, path: os.PathLike = "checkpoint") -> Dict[str, Any]:
    """The model state dict inside a loaded checkpoint: ``obj["model"]``, ``obj["state_dict"]``
    or ``obj`` itself, with a ``module.`` prefix (DistributedDataParallel) removed."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{path} holds no state dict: expected a dict of name -> tensor, "
                              "or one under the key 'model' or 'state_dict'.")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def describe_shape_mismatches(model_state: Mapping[str, Any], ckpt_state: Mapping[str, Any]) -> str:
    """A table (name | model shape | checkpoint shape) of the names both hold with different
    shapes; ``""`` if there are none."""
    rows = []
    for name, value in model_state.items():
        if name in ckpt_state:
            mine, theirs = _shape(value), _shape(ckpt_state[name])
            if mine != theirs:
                rows.append((name, mine, theirs))
    if not rows:
        return ""
    return tabulate([(n, "x".join(map(str, a)) if a is not None else "-",
                      "x".join(map(str, b)) if b is not None else "-") for n, a, b in rows],
                    headers=["name", "model shape", "checkpoint shape"], tablefmt="pipe")


class LoadResult(NamedTuple):
    missing_keys: List[str]
    unexpected_keys: List[str]


def _name_list(title: str, names: Iterable[str], limit: int = 20) -> str:
    names = sorted(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    shown = ", ".join(names[:limit]) + more
    return f"{title} ({len(names)}): {shown}"


def load_state_dict_checked(model: torch.nn.Module, state: Mapping[str, Any], *,
                            strict: bool = True, source: str = "checkpoint") -> LoadResult:
    """Copy ``state`` (tensors or numpy arrays) into ``model``.

    Shape mismatches always raise ``CheckpointError`` with a table of the names and both
    shapes. With ``strict=True`` missing and unexpected keys raise too (listed); with
    ``strict=False`` they are logged and returned. ``source`` names the file in messages.
    """
    model_state = model.state_dict()
    state = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}
    missing = [k for k in model_state if k not in state]
    unexpected = [k for k in state if k not in model_state]
    table = describe_shape_mismatches(model_state, state)
    problems = []
    if table:
        problems.append("shapes that do not match the model:\n" + table)
    if strict and missing:
        problems.append(_name_list("missing keys (in the model, not in the checkpoint)", missing))
    if strict and unexpected:
        problems.append(_name_list("unexpected keys (in the checkpoint, not in the model)",
                                   unexpected))
    if problems:
        raise CheckpointError(
            f"{source} does not fit the model ({type(model).__name__}): " + "\n".join(problems)
            + "\nWas it saved from a different architecture (depth, number of classes, "
              "shortcut option)?")
    if missing:
        logger.warning("%s: %s", source, _name_list("missing keys left at their init", missing))
    if unexpected:
        logger.warning("%s: %s", source, _name_list("unexpected keys ignored", unexpected))
    model.load_state_dict(state, strict=False)
    return LoadResult(missing, unexpected)
