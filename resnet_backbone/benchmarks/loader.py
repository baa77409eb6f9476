"""The classification trainer's loader on one CPU core: training images per second that one
process on one thread turns into batches (read, decode, the paper's augmentation as the trainer
does it), from an ImageNet folder (one file per image: ``AugmentedDataset`` over
``ImageFolderDataset``, batches of ``SeededBatchSampler``) and from the same files written into tar
shards (``ShardTrainBatches``: webdataset's tar reader and shuffle buffer, then the same
augmentation), interleaved in one process (``tools/benchmark.py --rows loader``).

The files are on a local disk and in the page cache after the warm-up: the rows compare the CPU
cost of the two readers per core, not a network filesystem's or an object store's latency (which
is what the shards are for)."""
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import List

import torch
from torch.utils.data import DataLoader

from ..classification.sampler import AugmentedDataset, collate_skipping
from ..classification.shard_data import ShardedImages, ShardTrainBatches, StreamPlan
from ..classification.transforms import FastImageNetTrainTransform
from ..data.datasets import ImageFolderDataset
from ..data.sampler import SeededBatchSampler
from ..data.shards import image_folder_records, write_shards
from .augmentation import write_jpegs
from .harness import Bench

ROW = "loader"


def loader_rows(num_images: int = 256, width: int = 500, height: int = 375, quality: int = 90,
                batch: int = 32, shard_size: int = 64, repeats: int = 3) -> List[dict]:
    """Images per second on one core through each reader (median of ``repeats`` passes over the
    ``num_images`` files, after one warm-up pass)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "imagenet"
            for split in ("train", "val"):
                write_jpegs(_mkdir(root / split / "class0"), num_images, width, height, quality)
            folder = ImageFolderDataset(str(root), "train")
            write_shards(image_folder_records(folder, 0), tmp + "/shards", "train", folder.classes,
                         shard_size)
            sharded = ShardedImages(tmp + "/shards", "train")
            transform, iterations = FastImageNetTrainTransform(), num_images // batch

            def from_folder():
                sampler = SeededBatchSampler(len(folder), batch, seed=0, max_iter=iterations)
                for _ in DataLoader(AugmentedDataset(folder, transform), batch_sampler=sampler,
                                    num_workers=0, collate_fn=collate_skipping):
                    pass

            def from_shards():
                plan = StreamPlan(sharded, seed=0, global_batch=batch, rank=0, world_size=1,
                                  num_workers=0, shuffle_buffer=1000)
                for _ in ShardTrainBatches(plan, transform, start_iter=0, max_iter=iterations):
                    pass

            bench = Bench(SimpleNamespace(device="cpu", dtype="fp32", channels_last="off",
                                          compile=False, grid={"repeats": repeats, "warmup": 1},
                                          peak_tflops=None, classifier_modes=()))
            times = bench.time({"image folder (a file per image)": from_folder,
                                f"tar shards ({shard_size} images each, webdataset)": from_shards})
    finally:
        torch.set_num_threads(threads)
    folder_wall = times["image folder (a file per image)"][0]
    images = iterations * batch
    return [{"row": ROW, "reader": name, "images": f"{images} JPEG {width}x{height} q{quality}",
             "img_per_s_per_core": round(images / wall, 1), "vs_folder": round(folder_wall / wall, 2)}
            for name, (wall, _) in times.items()]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
