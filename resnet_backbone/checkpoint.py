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

* ``state_dict_from_checkpoint``, ``incompatible_keys_table``, ``load_state_dict_checked``.

fvcore checkpointers built on all of the above (``SafeCheckpointerMixin``, ``SafeCheckpointer``):
the classification trainer uses them with fvcore's ``PeriodicCheckpointer``, and the detection
layer mixes the same behaviour into detectron2's ``DetectionCheckpointer``.
"""
import _compat_pickle
import builtins
import collections
import contextlib
import io
import json
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
from fvcore.common.checkpoint import Checkpointer
from tabulate import tabulate

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "load_pickle_safely", "load_checkpoint_file",
    "save_checkpoint_atomic", "verify_checkpoint", "checkpoint_is_complete",
    "latest_complete_checkpoint", "state_dict_from_checkpoint", "describe_shape_mismatches",
    "load_state_dict_checked", "incompatible_keys_table", "group_keys", "CONTAINER_KEYS",
    "write_text_atomic", "append_text", "keep_json_lines", "SafeCheckpointerMixin", "SafeCheckpointer",
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
    temporary file is removed, ``path`` is untouched, and a ``CheckpointError`` says what
    happened (a full disk, a folder that cannot be written, ...)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e} (nothing was changed)") from e
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; torch.save's mode
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, CheckpointError) or not isinstance(e, Exception):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"writing {path} failed ({reason}); the file that had this name, "
                              "if any, is unchanged") from e
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
# The weights inside a checkpoint, and applying them
# --------------------------------------------------------------------------------------------
#: Keys under which checkpoints nest their weights: detectron2 / our trainers, Lightning-style
#: files, Detectron (caffe2) detection models, pycls.
CONTAINER_KEYS = ("model", "state_dict", "blobs", "model_state")


def state_dict_from_checkpoint(obj: Any, source: os.PathLike = "checkpoint"
                               ) -> Tuple[Dict[str, Any], str]:
    """The weights inside a loaded checkpoint: ``(state_dict, container key or "")``.

    Unwraps ``{"model": sd}``, ``{"state_dict": sd}``, ``{"blobs": sd}``, ``{"model_state": sd}``
    and strips a ``module.`` prefix (DistributedDataParallel). Every value must be a tensor or a
    numpy array; caffe2 ``*_momentum`` blobs are optimizer state and are dropped. Raises
    ``CheckpointError`` naming ``source`` otherwise.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds no state dict: a {type(obj).__name__}, not a dict "
                              f"of weights (name -> tensor, or one under "
                              f"{', '.join(CONTAINER_KEYS)}).")
    container = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), "")
    sd = dict(obj[container]) if container else dict(obj)
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not (isinstance(k, str) and k.endswith("_momentum"))}
    bad = sorted(str(k) for k, v in sd.items()
                 if not isinstance(k, str) or not isinstance(v, (torch.Tensor, np.ndarray)))
    if bad or not sd:
        found = f"non-array entries {bad[:5]}" if bad else "no weights"
        raise CheckpointError(f"{source} holds no state dict: {found} (looked inside "
                              f"{container or 'the top level'}; containers understood: "
                              f"{', '.join(CONTAINER_KEYS)})")
    return sd, container


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _shape_text(shape: Optional[Tuple[int, ...]]) -> str:
    return "x".join(map(str, shape)) if shape is not None else "-"


def shape_mismatches(model_state: Mapping[str, Any], ckpt_state: Mapping[str, Any]
                     ) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    """(name, model shape, checkpoint shape) of the names both hold with different shapes."""
    return [(name, _shape(value), _shape(ckpt_state[name])) for name, value in model_state.items()
            if name in ckpt_state and _shape(value) != _shape(ckpt_state[name])]


def group_keys(keys: Iterable[str]) -> List[str]:
    """``a.b.weight``, ``a.b.bias`` -> ``a.b.{bias,weight}``: one entry per module."""
    groups: Dict[str, List[str]] = collections.defaultdict(list)
    for key in sorted(keys):
        module, _, leaf = key.rpartition(".")
        groups[module].append(leaf)
    return [f"{m}.{{{','.join(v)}}}" if len(v) > 1 else (f"{m}.{v[0]}" if m else v[0])
            for m, v in groups.items()]


def incompatible_keys_table(missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                            mismatched: Iterable[Tuple[str, Any, Any]] = ()) -> str:
    """One table of how a checkpoint and a model differ: shape mismatches (with both shapes),
    names only the model has ("missing"), names only the checkpoint has ("unexpected"); names
    are grouped per module. ``""`` if they do not differ. Both trainers report loads with it."""
    rows = [("shape mismatch", name, _shape_text(a), _shape_text(b)) for name, a, b in mismatched]
    rows += [("missing", k, "", "-") for k in group_keys(missing)]
    rows += [("unexpected", k, "-", "") for k in group_keys(unexpected)]
    if not rows:
        return ""
    return tabulate(rows, headers=["", "name", "model shape", "checkpoint shape"], tablefmt="pipe")


def describe_shape_mismatches(model_state: Mapping[str, Any], ckpt_state: Mapping[str, Any]) -> str:
    """The table of :func:`incompatible_keys_table` for shape mismatches only; ``""`` if none."""
    return incompatible_keys_table(mismatched=shape_mismatches(model_state, ckpt_state))


class LoadResult(NamedTuple):
    missing_keys: List[str]
    unexpected_keys: List[str]


def load_state_dict_checked(model: torch.nn.Module, state: Mapping[str, Any], *,
                            strict: bool = True, source: str = "checkpoint") -> LoadResult:
    """Copy ``state`` (tensors or numpy arrays) into ``model``.

    Shape mismatches always raise ``CheckpointError`` with a table of the names and both
    shapes. With ``strict=True`` missing and unexpected keys raise too (in the same table);
    with ``strict=False`` they are logged and returned. ``source`` names the file in messages.
    BN step counters (``num_batches_tracked``) hold no weights and are never reported.
    """
    model_state = model.state_dict()
    state = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}
    counter = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    missing = [k for k in model_state if k not in state and not counter(k)]
    unexpected = [k for k in state if k not in model_state and not counter(k)]
    mismatched = shape_mismatches(model_state, state)
    if mismatched or (strict and (missing or unexpected)):
        table = incompatible_keys_table(missing if strict else (), unexpected if strict else (),
                                        mismatched)
        raise CheckpointError(
            f"{source} does not fit the model ({type(model).__name__}):\n{table}\nWas it saved "
            "from a different architecture (depth, number of classes, shortcut option)?")
    if missing or unexpected:
        logger.warning("%s and the model differ (missing: left at their initial values; "
                       "unexpected: ignored):\n%s", source, incompatible_keys_table(missing, unexpected))
    model.load_state_dict({k: v for k, v in state.items() if k in model_state}, strict=False)
    return LoadResult(missing, unexpected)


# --------------------------------------------------------------------------------------------
# fvcore checkpointers that load safely, save atomically and resume from a readable file
# --------------------------------------------------------------------------------------------
def write_text_atomic(path: os.PathLike, text: str) -> str:
    """Write a small text file (``last_checkpoint``, a metrics file) so that it is never found
    half-written."""
    return _write_atomic(path, lambda f: f.write(text.encode()), None)


def keep_json_lines(path: os.PathLike, keep: Callable[[Dict], bool]) -> List[Dict]:
    """Rewrite (atomically) a file of one JSON object per line with only the objects ``keep``
    accepts, dropping a line cut by a crash; returns them. A resumed run uses it to drop what
    the interrupted one logged after its checkpoint."""
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(row, dict) and keep(row):
                    rows.append(row)
        write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return rows


def append_text(path: os.PathLike, text: str) -> None:
    """Append whole lines with one ``write`` call (``O_APPEND``), fsynced: a crash leaves the
    file with or without them, not with half a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


class SafeCheckpointerMixin:
    """What the package's checkpointers add to fvcore's ``Checkpointer`` (and so to detectron2's
    ``DetectionCheckpointer``, which the detection layer mixes it into):

    * loading through :func:`load_checkpoint_file` (never plain ``torch.load``/``pickle``), with
      a missing file named instead of an ``AssertionError``;
    * saving through :func:`save_checkpoint_atomic`, and ``last_checkpoint`` written atomically;
    * on resume, the tagged checkpoint if it is complete, else the newest complete periodic
      checkpoint (``model_<iteration>.pth``): a crash while writing never stops a resume.
    """

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):  # URLs: fvcore's PathManager
            raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
        return super().load(path, checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        data = load_checkpoint_file(filename)
        if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
            return dict(data)
        return {"model": state_dict_from_checkpoint(data, filename)[0]}

    def save(self, name: str, **kwargs: Any) -> None:
        """As fvcore's (model, checkpointables, ``kwargs``; then tag it as the last checkpoint),
        written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        save_checkpoint_atomic(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_text_atomic(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def get_checkpoint_file(self) -> str:
        tagged = super().get_checkpoint_file()
        if tagged and checkpoint_is_complete(tagged):
            return tagged
        newest = latest_complete_checkpoint(self.save_dir, "model_[0-9]*.pth") or ""
        if tagged and newest:
            self.logger.warning(f"The last checkpoint {tagged} cannot be read; resuming from "
                                f"{newest} instead.")
        return newest

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and bool(self.get_checkpoint_file())


class SafeCheckpointer(SafeCheckpointerMixin, Checkpointer):
    """fvcore's ``Checkpointer`` for the package's trainers: safe, atomic, resumable (see
    :class:`SafeCheckpointerMixin`), and strict: a checkpoint that does not fit the model (a
    missing, unexpected or differently shaped weight) raises ``CheckpointError`` with one table
    (:func:`load_state_dict_checked`) instead of training a partly initialised model."""

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        self._source = path
        return super().load(path, checkpointables)

    def _load_model(self, checkpoint: Dict[str, Any]) -> None:
        load_state_dict_checked(self.model, checkpoint.pop("model"), strict=True,
                                source=getattr(self, "_source", "checkpoint"))
        return None  # nothing left to report
