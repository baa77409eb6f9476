#!/usr/bin/env python
"""Measure the dataset check of an image folder (``resnet_backbone.data.image_check``): write a
synthetic ImageNet-layout folder of real JPEGs, then time the check without a cache (one
process, and the process pool it uses for a large folder) and again with the cache it wrote,
and project the time for ImageNet's 1,281,167 training images.

    python scripts/measure_image_check.py                        # 2,000 JPEGs of 500x375
    python scripts/measure_image_check.py --images 20000 --size 160 120 --workers 4

The files are in the page cache (just written): this measures the CPU cost of the check. On a
cold disk or a network file system the two small reads per file (header, last KiB) bound it.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from resnet_backbone.data import image_check  # noqa: E402

IMAGENET_TRAIN = 1_281_167


def write_folder(root: Path, images: int, classes: int, size) -> list:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    paths = []
    for i in range(images):
        folder = root / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.roll(base, i, axis=1)  # distinct files, cheap to make
        path = folder / f"img_{i:06d}.JPEG"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--size", type=int, nargs=2, default=(500, 375), metavar=("W", "H"),
                   help="image size (ImageNet's typical 500x375)")
    p.add_argument("--workers", type=int, default=0, help="pool processes (0: the check's default)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "train"
        paths = write_folder(split, args.images, args.classes, args.size)
        mb = sum(os.path.getsize(q) for q in paths) / args.images / 1e3
        print(f"{args.images} JPEGs of {args.size[0]}x{args.size[1]} ({mb:.0f} KB each) in "
              f"{args.classes} class folders; {os.cpu_count()} CPUs")
        runs = [("no cache, 1 process", dict(use_cache=False, workers=1)),
                (f"no cache, pool of {args.workers or image_check._workers()}",
                 dict(use_cache=True, workers=args.workers or None)),
                ("cached (second run)", dict(use_cache=True, workers=args.workers or None))]
        for name, kw in runs:
            serial_below = image_check.SERIAL_BELOW
            image_check.SERIAL_BELOW = 0 if "pool" in name else serial_below
            t = time.perf_counter()
            report = image_check.check_image_folder(split, paths, **kw)
            dt = time.perf_counter() - t
            image_check.SERIAL_BELOW = serial_below
            assert not report.bad, report.bad[:3]
            rate = args.images / dt
            print(f"{name:24s} {dt:7.3f} s  {rate:9.0f} images/s  verified {report.verified:6d}  "
                  f"-> ImageNet train ({IMAGENET_TRAIN:,}): {IMAGENET_TRAIN / rate:7.1f} s")


if __name__ == "__main__":
    main()
