"""Writing files so that a crash never loses the previous one.

* ``save_checkpoint_atomic``: ``torch.save`` to a temporary file in the same folder, fsync,
  check that it loads back safely, rename over the final name, fsync the folder. A crash at
  any point leaves either the old file or the new one under the final name, never a torn one.
* ``save_pickle_atomic``: the same for a plain pickle (protocol 2, what detectron2 reads).
* ``write_text_atomic``, ``keep_json_lines``, ``append_text``: the small text files next to the
  checkpoints (``last_checkpoint``, metrics files), never found half-written;
  ``write_file_atomic``: any other file (the tar shards of ``resnet-make-shards``).

The text helpers live here, not in a core I/O module of their own: they share the one
temporary-file-fsync-rename writer (``_write_atomic``) and its ``CheckpointError`` with the
checkpoint saves, so such a module would import this package and be imported by it (a cycle).
"""
import errno
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from .completeness import verify_checkpoint
from .safe_load import (CheckpointError, UnsafeCheckpointError, _load_torch_safely,
                        _offending_global, load_checkpoint_file)


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


#: Free space below which a failed write is reported as a full disk (torch.save's own error on
#: one is "[enforce fail at inline_container.cc] unexpected pos", which names no cause).
FULL_DISK_BYTES = 64 << 20


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _free_bytes(directory: Path) -> int:
    """Bytes an unprivileged process may still write on ``directory``'s file system."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _reason(e: Exception, directory: Path, written: int) -> str:
    """Why a write failed, in words: the OS's reason, or a full disk where the file system has
    (almost) no space left, whatever the writer's own message says."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"{e.strerror or 'No space left on device'} in {directory}"
    try:
        free = _free_bytes(directory)
    except OSError:
        free = None
    if free is not None and free < FULL_DISK_BYTES:
        return (f"No space left on device: {free >> 20} MiB free in {directory} after "
                f"{written >> 20} MiB written; free some space and run again (a training run: with "
                "--resume)")
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return f"{type(e).__name__}: {e}"


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
        # the free space is read before the temporary file gives its own back
        reason = _reason(e, path.parent, _size(tmp)) if isinstance(e, Exception) else ""
        try:
            os.unlink(tmp)
        except OSError:  # gone, or a file system turned read-only: the error to report is e
            pass
        if isinstance(e, CheckpointError) or not isinstance(e, Exception):
            raise
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


def write_file_atomic(path: os.PathLike, write: Callable[[Any], None]) -> str:
    """Write a file of any kind (a tar shard) through ``write(binary file object)`` so that it
    is never found half-written: the same temporary-file-fsync-rename as the checkpoints."""
    return _write_atomic(path, write, None)


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
