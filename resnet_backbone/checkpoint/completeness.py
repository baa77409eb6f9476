"""Is a checkpoint complete, and which one does ``--resume`` continue from.

* ``verify_checkpoint`` / ``checkpoint_is_complete``: cheap completeness check (a zip file
  truncated mid-write has no central directory), used by ``latest_complete_checkpoint`` to pick
  what ``--resume`` continues from (the highest iteration number, then files without one, then
  the latest mtime), and by the atomic saves to check what they wrote before it replaces the
  previous file.

Reading only: it builds on ``safe_load`` (format sniffing, the safe load of formats without an
index) and writes nothing.
"""
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Optional, Tuple

from .safe_load import CheckpointError, _file_kind, load_checkpoint_file

# The package's logger name, as before the split into modules: logging configuration that names
# "resnet_backbone.checkpoint" keeps applying, and records keep that name.
logger = logging.getLogger(__package__)


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
