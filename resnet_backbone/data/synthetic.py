"""Synthetic data in the real formats, for the tests and the embedded demos (nothing to
download), deterministic for a given seed:

* classification images (``make_synthetic``): 32x32 class colour + class stripe orientation +
  noise, learnable by a small CNN in a few hundred iterations, at chance for an untrained one;
  written as CIFAR-10 python batches (``write_cifar10_batches``) or an ImageNet folder
  (``write_image_folder``);
* detection scenes: coloured shapes on textured backgrounds, several per image, written in the
  COCO (json, ``write_shapes_coco``) and PASCAL VOC (xml, ``write_shapes_voc``) formats; they
  stand in for COCO / VOC in the tests and ``make demo``.
"""
import json
import math
import os
import pickle
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageDraw

from .datasets import CIFAR_TRAIN_FILES, ArrayDataset


# ------------------------------------------------------------------------ classification images

def make_synthetic(num_images: int, *, num_classes: int = 10, image_size: int = 32,
                   seed: int = 0) -> ArrayDataset:
    """Class c: a colour (hue c / K) and stripes at angle c*pi/K, randomly shifted, with noise.

    Deterministic for a given seed, learnable by a small CNN in a few hundred iterations, and
    hard enough that an untrained network is at chance.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(num_classes, (num_images,), generator=g)
    ys, xs = torch.meshgrid(torch.arange(image_size, dtype=torch.float32),
                            torch.arange(image_size, dtype=torch.float32), indexing="ij")
    hue = labels.float() / num_classes * 2 * math.pi
    colour = torch.stack([torch.cos(hue + k * 2 * math.pi / 3) for k in range(3)], 1)  # (N, 3)
    angle = labels.float() / num_classes * math.pi
    phase = torch.rand(num_images, generator=g) * 2 * math.pi
    wave = torch.sin((xs * torch.cos(angle)[:, None, None] + ys * torch.sin(angle)[:, None, None])
                     * (2 * math.pi / 6) + phase[:, None, None])  # (N, H, W), period 6 px
    images = 128 + 40 * colour[:, :, None, None] + 50 * wave[:, None] * colour.abs()[:, :, None, None]
    images = images + 45 * torch.randn(images.shape, generator=g)
    images = images.round().clamp(0, 255).to(torch.uint8)
    return ArrayDataset(images, labels, [f"class{i}" for i in range(num_classes)])



def write_cifar10_batches(folder, train: ArrayDataset, test: ArrayDataset) -> Path:
    """Write datasets as the official CIFAR-10 python batches (5 training batches, test_batch,
    batches.meta), e.g. a small synthetic CIFAR-10 for tests and demos."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = torch.arange(len(train)).chunk(5)
    parts = [(f, train.subset(idx)) for f, idx in zip(CIFAR_TRAIN_FILES, chunks)] + [("test_batch", test)]
    for name, part in parts:
        batch = {b"batch_label": name.encode(), b"labels": [int(v) for v in part.labels],
                 b"data": part.images.reshape(len(part), 3072).numpy(),
                 b"filenames": [f"{i}.png".encode() for i in range(len(part))]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in train.classes],
                     b"num_cases_per_batch": len(chunks[0]), b"num_vis": 3072}, f, protocol=2)
    return folder


def write_image_folder(root, split: str, dataset: ArrayDataset, size=None, first_index: int = 0) -> Path:
    """Write a dataset as JPEGs in ImageNet's class-folder layout (root/split/class/i.JPEG),
    optionally resized to ``size`` = (width, height); files are numbered from ``first_index``."""
    root = Path(root) / split
    for i, (img, label) in enumerate(dataset):
        folder = root / dataset.classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(img.permute(1, 2, 0).numpy())
        (im.resize(size, Image.BILINEAR) if size else im).save(folder / f"{split}_{first_index + i:05d}.JPEG", quality=90)
    return root


# ----------------------------------------------------------------------------- detection scenes

#: (name, RGB colour) of each class, in category-id order (COCO ids start at 1).
SHAPE_CLASSES: Tuple[Tuple[str, Tuple[int, int, int]], ...] = (
    ("circle", (220, 40, 40)),
    ("square", (40, 180, 40)),
    ("triangle", (40, 80, 220)),
    ("diamond", (230, 200, 30)),
    ("cross", (200, 40, 200)),
)


@dataclass
class ShapeObject:
    category: int  # index into SHAPE_CLASSES
    box: Tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    polygon: List[float]  # flattened x, y outline (COCO segmentation)


def _outline(kind: str, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if kind == "circle":
        return [(cx + r * math.cos(t), cy + r * math.sin(t))
                for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    if kind == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if kind == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if kind == "cross":
        a = r / 3
        return [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a),
                (cx + r, cy + a), (cx + a, cy + a), (cx + a, cy + r), (cx - a, cy + r),
                (cx - a, cy + a), (cx - r, cy + a), (cx - r, cy - a), (cx - a, cy - a)]
    raise ValueError(f"unknown shape {kind!r}")


def render_image(rng: np.random.Generator, size: Tuple[int, int], num_classes: int,
                 objects_per_image: Tuple[int, int]) -> Tuple[Image.Image, List[ShapeObject]]:
    """One image (height, width) = size with 1..n shapes that overlap little."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.uniform(60, 190, size=3)
    slope = rng.uniform(-0.3, 0.3, size=(2, 3))
    background = base + xx[..., None] * slope[0] * 100 / w + yy[..., None] * slope[1] * 100 / h
    background = background + rng.normal(0, 18, size=(h, w, 3))
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects: List[ShapeObject] = []
    target = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    for _ in range(target * 10):
        if len(objects) == target:
            break
        r = float(rng.uniform(0.07, 0.2) * min(h, w))
        cx, cy = float(rng.uniform(r, w - r)), float(rng.uniform(r, h - r))
        box = (cx - r, cy - r, cx + r, cy + r)
        if any(_iou(box, o.box) > 0.1 for o in objects):
            continue
        category = int(rng.integers(num_classes))
        name, colour = SHAPE_CLASSES[category]
        jitter = rng.integers(-25, 26, size=3)
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))
        points = _outline(name, cx, cy, r)
        draw.polygon(points, fill=fill, outline=(0, 0, 0))
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        tight = (max(min(xs), 0.0), max(min(ys), 0.0), min(max(xs), w - 1.0), min(max(ys), h - 1.0))
        objects.append(ShapeObject(category, tight, [c for p in points for c in p]))
    return image, objects


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _check_args(num_classes: int, num_images: int) -> None:
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(SHAPE_CLASSES)}; got {num_classes}")
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1; got {num_images}")


def class_names(num_classes: int) -> List[str]:
    return [name for name, _ in SHAPE_CLASSES[:num_classes]]


def write_shapes_coco(out_dir: os.PathLike, num_images: int = 64, *, image_size=(256, 320),
                      num_classes: int = 3, objects_per_image=(1, 4), seed: int = 0,
                      file_prefix: str = "") -> Tuple[str, str]:
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json`` (COCO instances format).

    Returns (json_file, image_root), the two arguments of detectron2's ``register_coco_instances``.
    """
    _check_args(num_classes, num_images)
    out_dir = Path(out_dir)
    image_root = out_dir / "images"
    image_root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        image, objects = render_image(rng, tuple(image_size), num_classes, tuple(objects_per_image))
        file_name = f"{file_prefix}{image_id:06d}.png"
        image.save(image_root / file_name)
        images.append({"id": image_id, "file_name": file_name, "height": image.height,
                       "width": image.width})
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj.category + 1,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "area": round((x1 - x0) * (y1 - y0), 2), "iscrowd": 0,
                "segmentation": [[round(c, 2) for c in obj.polygon]],
            })
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"}
                  for i, name in enumerate(class_names(num_classes))]
    json_file = out_dir / "annotations.json"
    json_file.write_text(json.dumps({
        "info": {"description": "resnet_backbone synthetic shapes", "version": "1.0"},
        "licenses": [], "images": images, "annotations": annotations, "categories": categories,
    }))
    return str(json_file), str(image_root)


def write_shapes_voc(root: os.PathLike, num_images: int = 64, *, split: str = "trainval",
                     image_size=(256, 320), num_classes: int = 3, objects_per_image=(1, 4),
                     seed: int = 0) -> Dict[str, object]:
    """Write a PASCAL VOC-layout folder: ``Annotations/*.xml``, ``JPEGImages/*.jpg`` and
    ``ImageSets/Main/<split>.txt``, readable by detectron2's ``register_pascal_voc``.

    Returns ``{"dirname", "split", "class_names"}``.
    """
    _check_args(num_classes, num_images)
    root = Path(root)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = class_names(num_classes)
    ids = []
    for i in range(num_images):
        image, objects = render_image(rng, tuple(image_size), num_classes, tuple(objects_per_image))
        image_id = f"{split}_{i:06d}"
        ids.append(image_id)
        image.save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
        size = ET.SubElement(ann, "size")
        for key, value in (("width", image.width), ("height", image.height), ("depth", 3)):
            ET.SubElement(size, key).text = str(value)
        for obj in objects:
            node = ET.SubElement(ann, "object")
            ET.SubElement(node, "name").text = names[obj.category]
            # pose/truncated/difficult as in real VOC files (detectron2's VOC evaluator reads all three)
            ET.SubElement(node, "pose").text = "Unspecified"
            ET.SubElement(node, "truncated").text = "0"
            ET.SubElement(node, "difficult").text = "0"
            box = ET.SubElement(node, "bndbox")
            # VOC boxes are 1-based inclusive pixel indices.
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
                ET.SubElement(box, key).text = str(int(round(value)) + 1)
        ET.ElementTree(ann).write(root / "Annotations" / f"{image_id}.xml")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return {"dirname": str(root), "split": split, "class_names": names}
