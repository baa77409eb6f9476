"""Boxes with their labels drawn on an image (torchvision's ``draw_bounding_boxes``), for the
commands that show a detector's output (``resnet-predict-det --draw``, ``resnet-visualize-det``
without OpenCV), and the atomic PNG write of the result."""
import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

Box = Tuple[Sequence[float], int, Optional[float]]  # (xyxy, class index, score or None)


def draw_boxes(rgb: np.ndarray, boxes: Sequence[Box], names: Sequence[str]) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB with ``boxes`` and their labels ("name 87%") drawn on a copy."""
    if not len(boxes):
        return np.asarray(rgb)
    image = torch.tensor(np.asarray(rgb)).permute(2, 0, 1)  # a copy: the image may be read-only
    labels = [(names[c] if 0 <= c < len(names) else f"class {c}")
              + ("" if score is None else f" {score:.0%}") for _, c, score in boxes]
    drawn = draw_bounding_boxes(image, torch.tensor([list(b) for b, _, _ in boxes], dtype=torch.float),
                                labels=labels, colors="yellow", width=2)
    return drawn.permute(1, 2, 0).numpy()


def save_png_atomic(rgb: np.ndarray, path: str) -> None:
    """Write ``rgb`` as a PNG at ``path`` through a temporary file in the same folder and a
    rename: an interrupted write leaves no half image under the final name."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        Image.fromarray(rgb).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
