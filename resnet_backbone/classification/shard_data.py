"""ImageNet read from tar shards (``DATASETS.FORMAT shards``; written by ``resnet-make-shards``,
read by webdataset: ``resnet_backbone.data.shards``): the training batches as a stream split per
process and per DataLoader worker, with the paper's augmentation and an exact resume; the
validation set and the mean image read the same way.

The training stream is a function of SEED, the shard index, the number of processes and
DATALOADER.NUM_WORKERS (so is the folder path's of SEED and the folder alone):

* An epoch is ``len(train) // SOLVER.IMS_PER_BATCH`` iterations, as with the folder.
* Readers: each process has ``max(1, NUM_WORKERS)`` streams (one per DataLoader worker); stream w
  of process r is reader ``s = r * streams + w`` of ``S = processes * streams``.
* In epoch e the shards are permuted (seeded by (SEED, e)); reader s reads shards s, s + S,
  s + 2S, ... of that permutation through webdataset's shuffle buffer (DATALOADER.SHUFFLE_BUFFER
  records, seeded by (SEED, e, s)), one pass after the other, each shuffled apart: no record
  comes twice before every record of the reader came once. A reader that needs more records
  than its shards hold starts another pass; one that needs fewer leaves the rest for that epoch.
  With shards of equal size whose number is a multiple of S, that is less than one process batch
  per reader.
* Batch k of an epoch (this process's part of the global batch k) is the next process-batch of
  records of stream ``k mod streams``. DataLoader workers hand out their batches in turn, so the
  process sees k = 0, 1, 2, ... in order (tested against the same stream read in one process).
* Each image's augmentation is the folder path's (``build_train_transform``: scale 256-480, 224
  crop, flip, PCA lighting; the per-pixel mean on the device) with the folder path's seed formula,
  (SEED, epoch, position in the epoch's global batches).

Resume is exact: a run resumed at iteration i of epoch e rebuilds epoch e's streams and skips the
records of the batches before i without decoding them (read and shuffled only: a resume costs one
read of up to an epoch's share of the shards, not its decode), then continues with the batches and
augmentation of the uninterrupted run, provided the number of processes and DATALOADER.NUM_WORKERS
are those of the interrupted run (the trainer warns when they differ: the run then goes on with
another, equally valid, order).

A new DataLoader (its workers) starts at each epoch: the stream of an epoch is rebuilt from its
seed, which is what makes the resume exact; the start costs a few seconds per epoch.
"""
import io
import random
from itertools import islice
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..data.datasets import CorruptImageError
from ..data.shards import ShardError, load_index, read_records, record_image, record_label
from ..seeding import derived_seed
from .device_decode import collate_encoded
from .sampler import collate_skipping
from .transforms import TestViews


class ShardedImages:
    """One split of a sharded image-classification set: its index (size, class names, shards)
    and how a record becomes an image. ``classes``: the training split's, which a val split must
    share (its labels are their indices)."""

    def __init__(self, location: str, split: str, skip_corrupt: bool = False,
                 classes: Optional[Sequence[str]] = None):
        self.index = load_index(location, split)
        if classes is not None and self.index.classes != list(classes):
            raise ShardError(f"the {split} shards in {location} name other classes than the train "
                             f"shards ({len(self.index.classes)} against {len(classes)}): write both "
                             "splits with one resnet-make-shards command")
        self.location, self.split, self.skip_corrupt = location, split, skip_corrupt
        self.classes: List[str] = self.index.classes

    def __len__(self) -> int:
        return self.index.num_samples

    def decoded(self, record: Dict[str, Any], decode: Callable[[Image.Image], Any]) -> Tuple[Any, int]:
        """``(decode(the record's image, opened, not yet decoded), label)``; ``(None, label)`` for
        an image that cannot be decoded with DATALOADER.SKIP_CORRUPT, else ``CorruptImageError``
        naming the record and its shard."""
        ext, data = record_image(record)
        label = record_label(record)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return decode(im), label
        except (OSError, ValueError, SyntaxError) as e:
            if self.skip_corrupt:
                return None, label
            raise CorruptImageError(
                f"cannot read image {record['__key__']}.{ext} in shard {record['__url__']}: {e}. "
                "Write the shards again from fixed files, or set DATALOADER.SKIP_CORRUPT True to "
                "skip such records") from None


def _worker() -> Tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class StreamPlan:
    """Who reads what: the global batch split over processes and their streams (see the module
    docstring). ``num_workers`` 0 reads the process's one stream in the process itself."""

    def __init__(self, images: ShardedImages, *, seed: int, global_batch: int, rank: int,
                 world_size: int, num_workers: int, shuffle_buffer: int):
        self.images, self.seed, self.global_batch = images, seed, global_batch
        self.rank, self.world, self.num_workers = rank, world_size, num_workers
        self.streams, self.per_process = max(1, num_workers), global_batch // world_size
        self.readers, self.shuffle_buffer = world_size * self.streams, shuffle_buffer
        shards = len(images.index.shards)
        if shards < self.readers:
            raise ValueError(f"the {shards} training shards in {images.location} cannot feed "
                             f"{self.readers} readers ({world_size} processes x {self.streams} "
                             "DataLoader workers): each reader needs a shard of its own; write "
                             "smaller shards (resnet-make-shards --shard-size) or lower "
                             "DATALOADER.NUM_WORKERS")
        self.batches_per_epoch = len(images) // global_batch
        if self.batches_per_epoch == 0:
            raise ValueError(f"SOLVER.IMS_PER_BATCH ({global_batch}) is larger than the training "
                             f"set ({len(images)} images)")

    def reader_shards(self, epoch: int, reader: int) -> List[str]:
        """Reader ``reader``'s shards in ``epoch``: every S-th of the epoch's permutation."""
        g = torch.Generator().manual_seed(derived_seed(self.seed, epoch, -1))
        urls = self.images.index.urls()
        return [urls[i] for i in torch.randperm(len(urls), generator=g).tolist()[reader::self.readers]]

    def reader_records(self, epoch: int, reader: int) -> Iterator[Dict[str, Any]]:
        """Reader ``reader``'s records of ``epoch``, shuffled (webdataset's shuffle buffer), each
        pass over its shards apart (no record comes twice before every record came once)."""
        from webdataset.filters import shuffle

        rng = random.Random(derived_seed(self.seed, epoch, -2 - reader))
        urls = self.reader_shards(epoch, reader)
        while True:
            yield from shuffle(self.shuffle_buffer, self.shuffle_buffer, rng=rng)(read_records(urls))

    def seeds(self, epoch: int, batch: int, count: int) -> List[int]:
        """The augmentation seeds of this process's part of global batch ``batch``: the folder
        path's (``SeededBatchSampler``) for the same positions."""
        first = batch * self.global_batch + self.rank * self.per_process
        return [derived_seed(self.seed, epoch, first + j) for j in range(count)]


class ShardEpoch(IterableDataset):
    """This process's batches ``first .. batches_per_epoch - 1`` of one epoch: in a DataLoader
    with W workers (``batch_size=None``), worker j reads stream ``(first + j) mod W``, so that
    the workers, served in turn, give the batches in order. ``encoded``: the images' bytes for
    the device decode (``collate_encoded``) instead of augmented pixels (``collate_skipping``)."""

    def __init__(self, plan: StreamPlan, transform, epoch: int, first: int = 0, encoded: bool = False):
        self.plan, self.transform, self.epoch = plan, transform, epoch
        self.first, self.encoded = first, encoded

    def __iter__(self) -> Iterator:
        worker, _ = _worker()
        return self.stream_batches((self.first + worker) % self.plan.streams)

    def stream_batches(self, stream: int) -> Iterator:
        p = self.plan
        records = p.reader_records(self.epoch, p.rank * p.streams + stream)
        for k in range(stream, p.batches_per_epoch, p.streams):
            batch = list(islice(records, p.per_process))
            if k >= self.first:  # the batches before a resume point are read, not decoded
                yield self._batch(k, batch)

    def _batch(self, k: int, records: List[Dict[str, Any]]):
        seeds = self.plan.seeds(self.epoch, k, len(records))
        if self.encoded:
            return collate_encoded([self._encoded(r, s) for r, s in zip(records, seeds)])
        return collate_skipping([self._augmented(r, s) for r, s in zip(records, seeds)])

    def _augmented(self, record: Dict[str, Any], seed: int):
        g = torch.Generator().manual_seed(seed)
        unloaded = getattr(self.transform, "wants_unloaded", False)
        x, label = self.plan.images.decoded(
            record, lambda im: self.transform(im if unloaded else im.convert("RGB"), g))
        return None if x is None else (x, label)

    @staticmethod
    def _encoded(record: Dict[str, Any], seed: int):
        _, data = record_image(record)
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), record_label(record), seed


def _as_made(batch):
    """A batch as ``ShardEpoch`` made it (the DataLoader's default would turn tuples into lists)."""
    return batch


class ShardTrainBatches:
    """The training batches of iterations ``start_iter .. max_iter - 1``, one DataLoader per
    epoch (``ShardEpoch``); yields what the folder path's DataLoader yields."""

    def __init__(self, plan: StreamPlan, transform, *, start_iter: int, max_iter: int,
                 encoded: bool = False, pin_memory: bool = False):
        self.plan, self.transform, self.encoded, self.pin_memory = plan, transform, encoded, pin_memory
        self.start_iter, self.max_iter = start_iter, max_iter
        self.batches_per_epoch = plan.batches_per_epoch

    def __len__(self) -> int:
        return self.max_iter - self.start_iter

    def __iter__(self) -> Iterator:
        it = self.start_iter
        while it < self.max_iter:
            epoch, first = divmod(it, self.batches_per_epoch)
            loader = DataLoader(ShardEpoch(self.plan, self.transform, epoch, first, self.encoded),
                                batch_size=None, collate_fn=_as_made, num_workers=self.plan.num_workers,
                                pin_memory=self.pin_memory, persistent_workers=False)
            end = it + min(self.batches_per_epoch - first, self.max_iter - it)
            for batch in islice(loader, end - it):
                yield batch
                it += 1
            if it != end:  # the workers' turns would be broken: never continue out of order
                raise RuntimeError(f"the shard stream of epoch {epoch} ended after iteration {it} "
                                   f"of {end}")


class ShardEvalItems(IterableDataset):
    """This process's share of a sharded test set as ``(views of mode, label, index)`` (None for
    a skipped record), as ``evaluate`` reads it: shard i is read by process ``i mod P``, there by
    DataLoader worker ``(i // P) mod W``. ``index``: the record's position in index order."""

    def __init__(self, images: ShardedImages, views: TestViews, mode: str, rank: int, world_size: int):
        self.images, self.views, self.mode, self.rank, self.world = images, views, mode, rank, world_size

    def __iter__(self) -> Iterator:
        worker, workers = _worker()
        offset = 0
        for i, (url, (_, count)) in enumerate(zip(self.images.index.urls(), self.images.index.shards)):
            if i % self.world == self.rank and (i // self.world) % workers == worker:
                for position, record in enumerate(read_records([url])):
                    img, label = self.images.decoded(record, lambda im: im.convert("RGB"))
                    yield None if img is None else (self.views(self.mode, img), label, offset + position)
            offset += count


class ShardMeanItems(IterableDataset):
    """The center views (``views.center``) of the first ``count`` training records, in index
    order (the records are in random order already): the mean image's inputs. DataLoader worker
    j of W reads shards j, j + W, ... of those needed; a skipped record gives None."""

    def __init__(self, images: ShardedImages, views: TestViews, count: int):
        self.images, self.views, self.count = images, views, count

    def __iter__(self) -> Iterator:
        worker, workers = _worker()
        left = self.count
        for i, (url, (_, n)) in enumerate(zip(self.images.index.urls(), self.images.index.shards)):
            if left <= 0:
                break
            take, left = min(n, left), left - min(n, left)
            if i % workers == worker:
                for record in islice(read_records([url]), take):
                    view, _ = self.images.decoded(record, lambda im: self.views.center(im.convert("RGB"))[0])
                    yield view


__all__ = ["ShardedImages", "StreamPlan", "ShardEpoch", "ShardTrainBatches", "ShardEvalItems",
           "ShardMeanItems"]
