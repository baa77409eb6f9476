"""The dataset check of an image folder, run once before training: every image's header is
decoded (``Image.open`` + ``verify()``), and a JPEG whose last KiB holds no end-of-image marker
is decoded in full, since PIL's ``verify()`` checks nothing of a JPEG beyond its header and so
misses truncated files. Empty, unreadable and truncated files are listed with a short reason.

The result is cached per class folder, keyed by the (name, size, mtime) of its files, so that a
second run re-verifies only the folders whose files changed. The cache is a small JSON file
(a key and the unreadable files per class folder: ~100 KB for ImageNet's 1000 folders) at
``$XDG_CACHE_HOME/resnet_backbone/image_check/<hash of the folder's path>.json`` (default
``~/.cache``). Not in the dataset (it may be shared, read-only or checksummed), nor in
``OUTPUT_DIR`` (each experiment has its own, and would verify ImageNet again).

Measured with ``scripts/measure_image_check.py``; a file PIL reads but the decoder rejects
later still fails (or is skipped) at read time (``ImageFolderDataset.read``).

The one owner of "is this image file readable": ``check_image`` (one file) and ``check_files``
(many: the groups, their cache, the process pool) serve the detection check too
(``resnet_backbone.detection.validation``), which words the reasons its own way and groups a
folder's files in buckets (COCO keeps 118k images in one folder).
"""
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

from ..checkpoint import CheckpointError, write_text_atomic

logger = logging.getLogger(__name__)

#: Bumped when the check or the cache's layout changes, so that older results are not reused.
CHECK_VERSION = 2
#: Unreadable files named in a message; the full list is in the cache file.
SHOWN = 5
#: Fewer files than this are verified in this process (a pool costs more than it saves).
SERIAL_BELOW = 2000
_CHUNK = 256
_JPEG_EOI, _TAIL = b"\xff\xd9", 1024


#: The reasons of ``check_image`` (other errors: "<exception type>: <its message>").
MISSING, EMPTY = "file does not exist", "empty file"
TRUNCATED, NOT_IMAGE = "truncated", "not an image"


def check_image(path: str) -> Optional[str]:
    """Why ``path`` cannot be read as an image (a few words), or None when it can."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return MISSING
    try:
        if size == 0:
            return EMPTY
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        if fmt == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(size - _TAIL, 0))
                tail = f.read()
            if _JPEG_EOI not in tail:  # truncated, or bytes after its end: the decoder tells
                with Image.open(path) as im:
                    im.load()
    except UnidentifiedImageError:
        return NOT_IMAGE
    except Exception as e:  # noqa: BLE001 - anything that stops the decoder makes it unreadable
        text = str(e).replace(repr(path), "").replace(path, "").strip(" :")
        if "truncated" in text.lower():
            return TRUNCATED
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    return None


def _check_chunk(paths: Sequence[str]) -> List[Optional[str]]:
    return [check_image(p) for p in paths]


@dataclass
class ImageCheck:
    """What the check of one split folder found."""
    folder: str
    total: int
    bad: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason), sorted
    verified: int = 0  # files decoded now (the others' results came from the cache)
    seconds: float = 0.0
    cache_file: Optional[str] = None  # where the result was written (None: nowhere writable)

    def names(self, shown: int = SHOWN) -> str:
        """``class/a.JPEG (reason), ...`` of the first ``shown`` unreadable files."""
        rel = [(os.path.relpath(p, self.folder), why) for p, why in self.bad[:shown]]
        text = ", ".join(f"{p} ({why})" for p, why in rel)
        more = len(self.bad) - shown
        if more > 0:
            text += f" and {more} more" + (f" (all listed in {self.cache_file})" if self.cache_file else "")
        return text

    def error_message(self) -> str:
        if len(self.bad) == 1:
            (path, why), = self.bad
            return (f"cannot read image {path} ({why}; found by the dataset check of the "
                    f"{self.total} images in {self.folder}). Remove or replace the file, or set "
                    "DATALOADER.SKIP_CORRUPT True to skip it")
        return (f"cannot read {len(self.bad)} of the {self.total} images in {self.folder} "
                f"(dataset check): {self.names()}. Remove or replace them, or set "
                "DATALOADER.SKIP_CORRUPT True to skip them")

    def skip_message(self, what: str) -> str:
        return (f"{len(self.bad)} unreadable {what} images will be skipped (dataset check of "
                f"{self.folder}): {self.names()}")

    def summary(self) -> str:
        return (f"dataset check of {self.folder}: {self.total} images, {len(self.bad)} unreadable, "
                f"{self.verified} verified now ({self.total - self.verified} unchanged since the "
                f"cached check), {self.seconds:.1f} s")


def cache_files(folder: Path) -> List[Path]:
    """Where the check of ``folder`` is cached, in order of preference: the user's cache folder
    (never the dataset: it may be shared, read-only, or checksummed)."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    return [home / "resnet_backbone" / "image_check" / f"{digest}.json"]


def _read_caches(files: Sequence[Path]) -> List[Dict[str, dict]]:
    """The per-folder results of every readable cache file (a read-only dataset may hold an
    older one beside the user's own)."""
    found = []
    for path in files:
        try:
            data = json.loads(path.read_text())
            if data.get("version") == CHECK_VERSION and isinstance(data.get("folders"), dict):
                found.append(data["folders"])
        except (OSError, ValueError, AttributeError):
            continue
    return found


def _write_cache(files: Sequence[Path], data: dict) -> Optional[str]:
    """``data`` written (atomically: ``write_text_atomic``) to the first of ``files`` that can be
    written; its path, or None when none can."""
    text = json.dumps(data, indent=1, sort_keys=True)
    for path in files:
        try:
            return write_text_atomic(path, text)
        except CheckpointError as e:
            logger.debug("dataset check: cannot write %s (%s)", path, e)
    return None


def _group_key(entries: Sequence[Tuple[str, int, int]]) -> str:
    h = hashlib.sha1(f"v{CHECK_VERSION}".encode())
    for name, size, mtime_ns in sorted(entries):
        h.update(f"{name}\0{size}\0{mtime_ns}\n".encode())
    return h.hexdigest()


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 16))
    except AttributeError:  # not on Linux
        return max(1, min(os.cpu_count() or 1, 16))


def _check_all(todo: Sequence[str], workers: Optional[int]) -> List[Optional[str]]:
    """``check_image`` of each of ``todo``: here below ``SERIAL_BELOW`` files, else in a pool."""
    workers = workers or _workers()
    if len(todo) < SERIAL_BELOW or workers == 1:
        return _check_chunk(todo)
    chunks = [todo[i:i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    try:  # header parsing holds the GIL: processes, not threads
        with ProcessPoolExecutor(min(workers, len(chunks))) as pool:
            return [r for part in pool.map(_check_chunk, chunks) for r in part]
    except (OSError, BrokenProcessPool) as e:  # no processes here (no /dev/shm, a limit)
        logger.info("dataset check: no process pool (%s); checking in this process", e)
        return _check_chunk(todo)


@dataclass
class FileCheck:
    """What ``check_files`` found."""
    bad: Dict[str, str]  # path as the caller gave it -> reason (``check_image``)
    verified: int  # files decoded now (the others' results came from the cache)
    cache_file: Optional[str]  # where the result is (None: not cached, or nowhere writable)
    unreadable: List[Tuple[str, str]]  # (name in the cache, reason) of the bad files, sorted


def check_files(paths: Sequence[str], group: Callable[[str], str], *, root=None,
                cache: Sequence[Path] = (), workers: Optional[int] = None) -> FileCheck:
    """``check_image`` of every file of ``paths``, reusing the cached result of each group of
    files (``group(name)``) whose files' (name, size, mtime) did not change. A file is named in
    the cache by its path relative to ``root`` (None: its absolute path); ``cache``: where the
    results are cached, in order of preference (the first writable one is written; empty: no
    cache). A missing file is reported as such, never cached. The groups of ``cache`` that
    ``paths`` do not touch are kept."""
    cache = [Path(f) for f in cache]
    given: Dict[str, str] = {}
    for p in paths:
        given.setdefault(os.path.relpath(p, root) if root is not None else os.path.abspath(p), p)
    bad: Dict[str, str] = {}
    groups: Dict[str, List[Tuple[str, int, int]]] = {}
    for name, p in given.items():
        try:
            st = os.stat(p)
        except OSError:
            bad[name] = MISSING
            continue
        groups.setdefault(group(name), []).append((name, st.st_size, st.st_mtime_ns))
    caches = _read_caches(cache)
    result: Dict[str, dict] = {}
    stale: List[str] = []
    for g, entries in groups.items():
        key = _group_key(entries)
        entry = next((c[g] for c in caches if isinstance(c.get(g), dict)
                      and c[g].get("key") == key and isinstance(c[g].get("bad"), dict)), None)
        if entry is None:
            entry = {"key": key, "bad": {}}
            stale.append(g)
        result[g] = entry
    todo = [name for g in stale for name, _, _ in groups[g]]
    for name, why in zip(todo, _check_all([given[n] for n in todo], workers)):
        if why is not None:
            result[group(name)]["bad"][name] = why
    for entry in result.values():
        bad.update(entry["bad"])
    unreadable = sorted((name, why) for name, why in bad.items() if why != MISSING)
    cache_file = None
    if cache and (stale or not caches):
        kept = {}
        for c in reversed(caches):
            kept.update(c)
        cache_file = _write_cache(cache, {
            "version": CHECK_VERSION, "folders": {**kept, **result},
            "unreadable": [list(u) for u in unreadable]})
    elif cache:
        cache_file = next((str(f) for f in cache if f.is_file()), None)
    return FileCheck({given.get(name, name): why for name, why in bad.items()}, len(todo),
                     cache_file, unreadable)


def check_image_folder(folder, paths: Sequence[str], use_cache: bool = True,
                       workers: Optional[int] = None) -> ImageCheck:
    """Check the image files ``paths`` of the split folder ``folder`` (class folder / files),
    reusing the cached result of every class folder whose files did not change."""
    start, folder = time.perf_counter(), Path(folder)
    found = check_files(paths, lambda name: name.split(os.sep, 1)[0], root=folder,
                        cache=cache_files(folder) if use_cache else (), workers=workers)
    report = ImageCheck(str(folder), len(paths), sorted(found.bad.items()), verified=found.verified,
                        cache_file=found.cache_file)
    report.seconds = time.perf_counter() - start
    return report
