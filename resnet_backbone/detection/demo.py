"""The embedded default of ``tools/train_det.py`` (``make demo``): a detector that really learns,
offline, on CPU, in a few minutes.

With no ``--config-file``, ``train_det.py`` writes a small synthetic COCO-format dataset
(``resnet_backbone.data.synthetic``: coloured shapes on textured backgrounds; training and
held-out validation images from different seeds) under ``<OUTPUT_DIR>/data``, registers it, and
trains ``DEMO_CONFIG``: Faster R-CNN, the paper's C4 design with ResNet-18 from scratch (no
ImageNet weights offline, so BN instead of FrozenBN), then evaluates with ``COCOEvaluator`` on
the held-out images.
"""
import os
from pathlib import Path
from typing import List, Tuple

from ..data.synthetic import write_shapes_coco
from ..recipes import get_config_file

#: The demo's config (its ``_BASE_`` is the paper's C4 recipe), inside ``resnet_backbone.configs``.
DEMO_CONFIG = "detection/Demo-Shapes-R18-C4.yaml"
#: Dataset names the demo config trains and tests on.
TRAIN_NAME, VAL_NAME = "shapes_demo_train", "shapes_demo_val"
#: Images of the generated splits, their size (H, W) and classes; the seeds differ, so the
#: validation images are new to the model.
TRAIN_IMAGES, VAL_IMAGES, IMAGE_SIZE, NUM_CLASSES = 400, 100, (160, 192), 3
TRAIN_SEED, VAL_SEED = 0, 1000


def demo_config_file() -> str:
    """The path of the demo's config file, in the installed package."""
    return get_config_file(DEMO_CONFIG)


def write_demo_datasets(data_dir: os.PathLike) -> List[Tuple[str, str, str]]:
    """Write (once; the files are deterministic) the demo's train and val splits.

    Returns ``--dataset``-style ``(name, json_file, image_root)`` triples.
    """
    specs = []
    for name, count, seed in ((TRAIN_NAME, TRAIN_IMAGES, TRAIN_SEED),
                              (VAL_NAME, VAL_IMAGES, VAL_SEED)):
        split_dir = Path(data_dir) / name
        json_file, image_root = split_dir / "annotations.json", split_dir / "images"
        if not json_file.is_file():  # the json is written last: present means complete
            json_file, image_root = write_shapes_coco(split_dir, count, image_size=IMAGE_SIZE,
                                                      num_classes=NUM_CLASSES, seed=seed)
        specs.append((name, str(json_file), str(image_root)))
    return specs
