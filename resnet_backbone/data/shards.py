"""Image datasets as tar shards in webdataset's layout: written by ``resnet-make-shards``, read as
a stream by the classification trainer (``classification.shard_data``, ``DATASETS.FORMAT shards``).

Layout (webdataset's): a shard is a plain tar file, ``<split>-000000.tar``, ``<split>-000001.tar``,
...; a record is the files that share a key: the image as it was on disk (``<key>.jpeg``,
``<key>.png``, ...: the bytes are copied, never re-encoded) and its label, ``<key>.cls`` (the class
index in ASCII) or ``<key>.json`` (a detection image's annotations). The records are in a random
order fixed by a seed, so that each shard holds a mix of classes and a small shuffle buffer gives
mixed batches. Beside the shards, ``<split>.json`` indexes them in the layout of webdataset's
``wids`` shard index (``"__kind__": "wids-shard-index-v1"``, ``"shardlist"`` of ``{"url",
"nsamples"}`` with urls relative to the index) plus the class names: the trainer learns the size
of the set and its classes without opening a shard.

Reading is webdataset's (``webdataset.tariterators.tarfile_samples``; ``webdataset.gopen`` opens
local paths, ``file://``, ``http(s)://`` through curl, ``gs://``, ``hf://``, ...). A shard that
cannot be opened or is damaged stops the reader with ``ShardError`` naming it (and the last record
read from it); a record without an image or a label is named by its key and shard.
"""
import hashlib
import json
import os
import re
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import urlparse
from urllib.request import url2pathname

from ..checkpoint import write_file_atomic, write_text_atomic

#: The ``__kind__`` of webdataset's ``wids`` shard index, which ours extends.
INDEX_KIND = "wids-shard-index-v1"
#: Files of a record that are not its image.
NOT_IMAGE = ("cls", "json")
#: Shard names: ``<split>-<6-digit number>.tar``.
SHARD_NAME = "{split}-{number:06d}.tar"


class ShardError(ValueError):
    """A shard or its index cannot be read, or a record in it is incomplete."""


@dataclass
class ShardIndex:
    """``<split>.json``: where the shards are, how many records each holds, the class names.

    ``location``: the folder or URL prefix the index was read from (its urls are relative to it).
    """
    location: str
    split: str
    classes: List[str]
    shards: List[Tuple[str, int]]  # (url relative to location, number of records)
    extra: Dict[str, Any]

    @property
    def num_samples(self) -> int:
        return sum(n for _, n in self.shards)

    def urls(self) -> List[str]:
        """Each shard's full path or URL, in index order."""
        return [join_location(self.location, name) for name, _ in self.shards]

    def digest(self) -> str:
        """Equal on machines whose copies hold the same shards (names, sizes, classes)."""
        text = json.dumps([self.split, self.classes, self.shards], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def has_scheme(location: str) -> bool:
    """``http://...``, ``gs://...``, ``pipe:...``: not a local path (a one-letter scheme is a
    Windows drive)."""
    return len(urlparse(location).scheme) > 1


def join_location(location: str, name: str) -> str:
    """``name`` inside the folder or URL prefix ``location``."""
    if has_scheme(location):
        return location.rstrip("/") + "/" + name
    return os.path.join(location, name)


def local_path(url: str) -> Optional[str]:
    """The file a local path or ``file://`` URL names; None for a remote URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return url2pathname(parsed.path)
    return None if has_scheme(url) else url


def index_name(split: str) -> str:
    return f"{split}.json"


def load_index(location: str, split: str) -> ShardIndex:
    """The index of ``split`` in the folder or URL prefix ``location`` (read with webdataset's
    ``gopen``, like the shards)."""
    from webdataset import gopen

    path = join_location(location, index_name(split))
    how = (f"expected {index_name(split)} beside the shards, as resnet-make-shards writes it")
    try:
        with gopen(path, "rb") as f:
            data = json.loads(f.read().decode())
    except (OSError, ValueError) as e:
        raise ShardError(f"cannot read the shard index {path}: {_first_line(e)}; {how}") from None
    try:
        if data.get("__kind__") != INDEX_KIND:
            raise ValueError(f"__kind__ is {data.get('__kind__')!r}, not {INDEX_KIND!r}")
        shards = [(str(s["url"]), int(s["nsamples"])) for s in data["shardlist"]]
        classes = [str(c) for c in data["classes"]]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ShardError(f"{path} is not a shard index ({_first_line(e)}); {how}") from None
    empty = [name for name, n in shards if n <= 0]
    if not shards or empty:
        what = "no shards" if not shards else "empty shards: " + ", ".join(empty[:3])
        raise ShardError(f"{path} lists {what}; write the shards again with resnet-make-shards")
    extra = {k: v for k, v in data.items() if k not in ("__kind__", "shardlist", "classes")}
    return ShardIndex(location, split, classes, shards, extra)


def missing_local_shards(index: ShardIndex) -> List[str]:
    """The shards of a local index that are not files (remote ones are found out when read)."""
    paths = [local_path(url) for url in index.urls()]
    return [p for p in paths if p is not None and not os.path.isfile(p)]


def record_image(record: Dict[str, Any]) -> Tuple[str, bytes]:
    """``(extension, bytes)`` of a record's image (its one file that is not a label)."""
    found = [(k, v) for k, v in record.items() if not k.startswith("__") and k not in NOT_IMAGE]
    if len(found) != 1:
        raise ShardError(f"record {record.get('__key__')} of shard {record.get('__url__')} has "
                         f"{'no image' if not found else 'several images'} (files: "
                         f"{', '.join(sorted(k for k in record if not k.startswith('__')))}); "
                         "write the shards again with resnet-make-shards")
    return found[0]


def record_label(record: Dict[str, Any]) -> int:
    """A classification record's class index (its ``.cls`` file)."""
    try:
        return int(record["cls"])
    except (KeyError, ValueError) as e:
        raise ShardError(f"record {record.get('__key__')} of shard {record.get('__url__')} has no "
                         f"class index (.cls file: {_first_line(e)}); write the shards again with "
                         "resnet-make-shards") from None


def read_records(urls: Iterable[str]) -> Iterator[Dict[str, Any]]:
    """The records of the shards ``urls``, in order: dicts ``{"__key__", "__url__", <extension>:
    bytes, ...}`` (webdataset's samples, not decoded). A shard that cannot be opened or read to
    its end raises ``ShardError`` naming it and the last record read from it."""
    from webdataset.tariterators import tarfile_samples

    for url in urls:
        last = None
        try:
            for record in tarfile_samples([{"url": url}]):
                last = record["__key__"]
                yield record
        except (OSError, tarfile.TarError, ValueError, EOFError) as e:
            where = f"after record {last}" if last is not None else "before its first record"
            raise ShardError(f"cannot read shard {url} ({where}): {_first_line(e)}. Check that "
                             "the file exists and is complete (copy it again, or write the shards "
                             "again with resnet-make-shards)") from None


def write_shards(records: Iterable[Dict[str, Any]], out_dir: str, split: str, classes: Sequence[str],
                 shard_size: int, extra: Optional[Dict[str, Any]] = None,
                 progress: Callable[[int], None] = lambda n: None) -> ShardIndex:
    """Write ``records`` (webdataset samples: ``__key__`` and files as bytes) into shards of
    ``shard_size`` records in ``out_dir``, then their index, ``<split>.json``. Each shard and the
    index are written atomically (a crash leaves whole files only); the index comes last, so a
    folder with an index holds every shard it lists. Shards of an earlier, longer run of the same
    split are removed after the new index is written. ``progress(n)``: after each record."""
    from webdataset import TarWriter

    if shard_size <= 0:
        raise ValueError(f"the shard size must be > 0 records; got {shard_size}")
    records, shards, keys = iter(records), [], set()
    while True:
        first = next(records, None)
        if first is None:
            break
        name, count = SHARD_NAME.format(split=split, number=len(shards)), 0

        def write(f, first=first):
            nonlocal count
            writer = TarWriter(f, encoder=False, mtime=0)  # byte-identical for the same records
            try:
                record = first
                while record is not None:
                    if record["__key__"] in keys:
                        raise ValueError(f"two records have the key {record['__key__']}: keys must "
                                         "be unique (they name the records in messages)")
                    keys.add(record["__key__"])
                    writer.write(record)
                    count += 1
                    progress(count)
                    record = next(records, None) if count < shard_size else None
            finally:
                writer.close()

        write_file_atomic(os.path.join(out_dir, name), write)
        shards.append((name, count))
    if not shards:
        raise ValueError(f"no records to write for the {split} split")
    index = {"__kind__": INDEX_KIND, "wids_version": 1, "name": split,
             "shardlist": [{"url": name, "nsamples": n} for name, n in shards],
             "classes": list(classes), **(extra or {})}
    write_text_atomic(os.path.join(out_dir, index_name(split)), json.dumps(index, indent=1) + "\n")
    number = len(shards)
    while os.path.exists(stale := os.path.join(out_dir, SHARD_NAME.format(split=split, number=number))):
        os.unlink(stale)
        number += 1
    return ShardIndex(out_dir, split, list(classes), shards, extra or {})


def image_folder_records(dataset, seed: int) -> Iterator[Dict[str, Any]]:
    """The images of an ``ImageFolderDataset`` split as records, in a random order fixed by
    ``seed``: key = the file's path in the split without its suffix (dots made underscores:
    webdataset splits a key from its extension at the first dot), the file's bytes under its
    lower-case suffix, the label as ``cls``. The files the dataset check found unreadable (and
    skips) are left out."""
    import torch

    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    for i in order:
        data, label = dataset.read_bytes(i)
        if data is None:
            continue
        stem, suffix = os.path.splitext(os.path.relpath(dataset.folder.samples[i][0], dataset.root))
        yield {"__key__": stem.replace(".", "_"), suffix.lstrip(".").lower(): data,
               "cls": str(label).encode()}


def coco_records(json_file: str, image_root: str, seed: int,
                 skipped: Optional[List[str]] = None
                 ) -> Tuple[List[str], List[Dict], int, Iterator[Dict[str, Any]]]:
    """A COCO-format split as records: ``(class names, categories, number of images,
    records)``. A record is an image's file (bytes, under its lower-case suffix) and ``json``:
    ``{"image": its entry, "annotations": [its annotations]}`` as in the json file; key = the file
    name without suffix (dots made underscores). Images in a random order fixed by ``seed``. A missing or unreadable
    file raises ``FileNotFoundError`` naming it, or, when ``skipped`` is a list, is appended to it
    and left out."""
    import torch

    with open(json_file) as f:
        data = json.load(f)
    try:
        images, categories = data["images"], sorted(data["categories"], key=lambda c: c["id"])
        annotations: Dict[Any, List[Dict]] = {}
        for a in data.get("annotations", []):
            annotations.setdefault(a["image_id"], []).append(a)
        names = [str(c["name"]) for c in categories]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{json_file} is not a COCO-format instances file (no {_first_line(e)}); "
                         "expected 'images', 'annotations' and 'categories'") from None

    def records() -> Iterator[Dict[str, Any]]:
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).tolist()
        for i in order:
            image = images[i]
            path = os.path.join(image_root, image["file_name"])
            try:
                with open(path, "rb") as f:
                    content = f.read()
            except OSError as e:
                if skipped is None:
                    raise FileNotFoundError(f"cannot read image {path} of {json_file}: "
                                            f"{e.strerror or e}; give the folder its file_name "
                                            "entries are relative to, or --skip-corrupt") from None
                skipped.append(path)
                continue
            stem, suffix = os.path.splitext(image["file_name"])
            yield {"__key__": stem.replace(".", "_"), suffix.lstrip(".").lower(): content,
                   "json": json.dumps({"image": image,
                                       "annotations": annotations.get(image["id"], [])}).encode()}
    return names, categories, len(images), records()


def _first_line(e: BaseException) -> str:
    """An exception's message on one line; webdataset's failed fetch command (curl, gsutil, a
    pipe: its whole argument list and status) as ``curl exited with status 22``."""
    text = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
    command = re.search(r"\[\s*'([^']+)'.*: exit (-?\d+)", text)
    if command:
        return f"{os.path.basename(command.group(1))} exited with status {command.group(2)}"
    return (text.strip().splitlines() or [type(e).__name__])[0]


__all__ = ["ShardError", "ShardIndex", "load_index", "missing_local_shards", "read_records",
           "record_image", "record_label", "write_shards", "join_location", "local_path",
           "has_scheme", "image_folder_records", "coco_records", "INDEX_KIND"]
