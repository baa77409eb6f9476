"""Write an ImageNet folder, or a COCO-format split, into tar shards in webdataset's layout.

    resnet-make-shards imagenet /data/imagenet /data/imagenet-shards       # its train/ and val/
    resnet-train-cls --config-file configs/classification/imagenet/resnet50.yaml \\
        DATASETS.FORMAT shards DATASETS.ROOT /data/imagenet-shards         # or https://host/dir
    resnet-make-shards coco --json annotations/instances_val2017.json --images val2017 \\
        --split val2017 /data/coco-shards

Each shard holds ``--shard-size`` records (the last one fewer) in a random order fixed by
``--seed``: the image file's bytes as they are (never re-encoded) and its label (``.cls``, the
class index; COCO: ``.json``, the image's entry and annotations). Beside them ``<split>.json``
indexes the shards (webdataset's ``wids`` index layout, plus the class names). Layout and reader:
``resnet_backbone/data/shards.py``; how ``resnet-train-cls`` streams them:
``resnet_backbone/classification/shard_data.py``. The trainers read COCO shards not yet:
``resnet-train-det`` takes the COCO json and image folder.

The images are checked first (ImageNet: the dataset check of ``resnet-train-cls``, cached): an
unreadable file stops the command naming it, or, with ``--skip-corrupt``, is left out and counted.
Every shard and the index are written atomically, the index last: a folder with an index holds
every shard it lists. (``python tools/make_shards.py`` is the same.) Bad input ends with one line
``error: ...`` and exit status 2.
"""
import argparse
import os
import sys
from typing import Any, Dict, Iterable, List, Sequence

from ..data.datasets import ImageFolderDataset
from ..data.shards import coco_records, image_folder_records, index_name, write_shards
from .common import run_tool


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True)
    imagenet = sub.add_parser("imagenet", help="an ImageNet folder (train/ and val/ of class folders)")
    imagenet.add_argument("root", metavar="ROOT", help="the folder holding train/ and val/")
    coco = sub.add_parser("coco", help="one COCO-format split (instances json + image folder)")
    coco.add_argument("--json", required=True, help="the split's COCO-format instances .json")
    coco.add_argument("--images", required=True, help="the folder its file_name entries are in")
    coco.add_argument("--split", required=True, help="the name of the shards (<split>-000000.tar)")
    for p in (imagenet, coco):
        p.add_argument("output", metavar="OUTPUT", help="the folder to write the shards into")
        p.add_argument("--shard-size", type=int, default=1000,
                       help="records per shard (default 1000: ImageNet's ~110 MB shards)")
        p.add_argument("--seed", type=int, default=0, help="the seed of the records' order")
        p.add_argument("--skip-corrupt", action="store_true",
                       help="leave out unreadable images (counted) instead of stopping")
        p.add_argument("--overwrite", action="store_true",
                       help="replace shards of the same split already in OUTPUT")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _refuse_existing(output: str, splits: Sequence[str], overwrite: bool) -> None:
    there = [s for s in splits if os.path.exists(os.path.join(output, index_name(s)))]
    if there and not overwrite:
        raise ValueError(f"{output} already holds {' and '.join(there)} shards "
                         f"({', '.join(index_name(s) for s in there)}); add --overwrite to replace "
                         "them, or choose another folder")


def _write(args, split: str, records: Iterable[Dict[str, Any]], classes: List[str], total: int,
           extra=None) -> str:
    from tqdm import tqdm

    with tqdm(total=total, unit="img", desc=split, disable=args.no_progress, dynamic_ncols=True) as bar:
        index = write_shards(records, args.output, split, classes, args.shard_size, extra,
                             progress=lambda n: bar.update(1))
    return (f"{split}: {index.num_samples} images in {len(index.shards)} shards "
            f"({index.shards[0][0]} ... {index.shards[-1][0]}), index {index_name(split)}")


def make_imagenet(args) -> List[str]:
    _refuse_existing(args.output, ("train", "val"), args.overwrite)
    train = ImageFolderDataset(args.root, "train", args.skip_corrupt)
    val = ImageFolderDataset(args.root, "val", args.skip_corrupt, classes=train.classes)
    lines = []
    for dataset in (train, val):
        report = dataset.check()  # raises naming the unreadable files, unless --skip-corrupt
        if report.bad:
            print(report.skip_message(dataset.split), flush=True)
        lines.append(_write(args, dataset.split, image_folder_records(dataset, args.seed),
                            list(train.classes), len(dataset) - len(report.bad),
                            {"source": os.path.abspath(dataset.root)}))
    return lines


def make_coco(args) -> List[str]:
    _refuse_existing(args.output, (args.split,), args.overwrite)
    for path, what in ((args.json, "file"), (args.images, "folder")):
        if not (os.path.isfile if what == "file" else os.path.isdir)(path):
            raise FileNotFoundError(f"{path} is not a {what}; give the split's instances json "
                                    "(--json) and its image folder (--images)")
    skipped: List[str] = []
    names, categories, total, records = coco_records(args.json, args.images, args.seed,
                                                     skipped if args.skip_corrupt else None)
    line = _write(args, args.split, records, names, total,
                  {"categories": categories, "source": os.path.abspath(args.json)})
    if skipped:
        line += f"; {len(skipped)} unreadable images left out (first: {skipped[0]})"
    return [line]


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> None:
        if args.shard_size <= 0:
            raise ValueError(f"--shard-size must be > 0 records; got {args.shard_size}")
        for line in (make_imagenet if args.kind == "imagenet" else make_coco)(args):
            print(line, flush=True)
        print(f"shards in {os.path.abspath(args.output)}", flush=True)
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
