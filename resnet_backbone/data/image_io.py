"""Read a user's images for prediction: one owner for "what counts as an image and how it
becomes RGB pixels", shared by the classification and detection predictors.

``load_image`` takes a file path, a PIL image, a numpy array or a tensor and returns an
``(H, W, 3)`` uint8 RGB array, decoded the way detectron2's ``read_image`` decodes a file:

* the EXIF orientation is applied (a phone photo taken upright is upright);
* grayscale (``L``), palette (``P``), ``LA`` and ``RGBA`` become RGB, the alpha channel dropped
  (as PIL's ``convert("RGB")`` does, which is what detectron2 calls);
* CMYK JPEGs (Adobe's inverted ones included: PIL reads the APP14 marker) become RGB;
* 16-bit images (``I;16`` / ``I`` PNGs and TIFFs) are scaled to 8 bits by their top byte. Here
  we differ from detectron2 on purpose: its ``convert("RGB")`` clips every value above 255, so a
  16-bit scan becomes nearly all white. 32-bit float (``F``) images are read as 0-255 values.

``find_images`` expands the files, folders and glob patterns of a command line into image paths.

Errors are ``ImageReadError`` (a ``ValueError``, so the command lines print ``error: ...``),
whose message names the file and the reason, e.g. ``dog.jpg: truncated JPEG``.
"""
import glob
import os
from typing import Iterable, List, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: The extensions ``find_images`` picks from a folder (any case). A file named on the command
#: line is read whatever its extension.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]


class ImageReadError(ValueError):
    """An image that cannot be read: the message names it and says why."""


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a decoded PIL image of any mode (rules in the module doc)."""
    image = ImageOps.exif_transpose(image) or image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray = np.asarray(image, dtype=np.int64)
        eight = np.clip(gray >> 8, 0, 255).astype(np.uint8)
        return np.repeat(eight[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype=np.float32), 0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def read_image_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """The file at ``path`` as ``(H, W, 3)`` uint8 RGB; ``ImageReadError`` naming it and why
    it cannot be read (missing, empty, not an image, truncated, ...)."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise ImageReadError(f"{name}: no such file")
    if os.path.isdir(name):
        raise ImageReadError(f"{name}: a folder, not an image file")
    if os.path.getsize(name) == 0:
        raise ImageReadError(f"{name}: empty file")
    try:
        with Image.open(name) as image:
            image.load()  # PIL decodes lazily: a truncated file fails here, not later
            return _pil_to_rgb(image)
    except UnidentifiedImageError:
        raise ImageReadError(f"{name}: not an image (PIL cannot identify its format)") from None
    except (OSError, ValueError, SyntaxError) as e:
        reason = str(e).replace(repr(name), "").replace(name, "").strip(" :") or type(e).__name__
        if "truncated" in reason.lower():
            raise ImageReadError(f"{name}: truncated file (the decoder ran out of data)") from None
        raise ImageReadError(f"{name}: cannot decode: {reason}") from None


def _array_to_rgb(array: np.ndarray, what: str) -> np.ndarray:
    """An ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array (uint8, or float in
    0-255) as ``(H, W, 3)`` uint8; 16-bit arrays by their top byte."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise ImageReadError(f"{what}: expected an (H, W), (H, W, 3) or (H, W, 4) image array, "
                             f"got shape {tuple(array.shape)}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ImageReadError(f"{what}: expected a numeric image array, got {array.dtype}")
        array = np.clip(np.nan_to_num(array.astype(np.float64)), 0, 255).round().astype(np.uint8)
    array = array[:, :, :3]
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array)


def load_image(source: ImageSource, array_format: str = "RGB") -> np.ndarray:
    """``source`` as an ``(H, W, 3)`` uint8 RGB array.

    ``source``: a file path; a PIL image; a numpy array ``(H, W[, C])`` (PIL's and OpenCV's
    layout) whose channels are in ``array_format`` order ("RGB", or "BGR" for OpenCV's
    ``cv2.imread``); a tensor ``(C, H, W)`` (torchvision's layout, e.g. ``torchvision.io.
    read_image``), RGB, uint8 or float in 0-255.
    """
    if array_format not in ("RGB", "BGR"):
        raise ValueError(f"array_format must be 'RGB' or 'BGR', not {array_format!r}")
    if isinstance(source, (str, os.PathLike)):
        return read_image_file(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, torch.Tensor):
        if source.dim() == 2:
            source = source[None]
        if source.dim() != 3 or source.shape[0] not in (1, 3, 4):
            raise ImageReadError(f"tensor image: expected (C, H, W) with C in 1, 3, 4 (torchvision's "
                                 f"layout), got shape {tuple(source.shape)}")
        return _array_to_rgb(source.detach().cpu().permute(1, 2, 0).numpy(), "tensor image")
    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source, "array image")
        if array_format == "BGR" and source.ndim == 3 and source.shape[2] >= 3:
            rgb = np.ascontiguousarray(rgb[:, :, ::-1])
        return rgb
    raise ImageReadError(f"cannot read an image from a {type(source).__name__}: give a file path, a "
                         "PIL image, a numpy array (H, W, C) or a tensor (C, H, W)")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def find_images(inputs: Iterable[Union[str, os.PathLike]]) -> List[str]:
    """The image files that ``inputs`` name, in order, without repeats: a file as is (whatever
    its extension: it was asked for), a folder's image files (by extension, recursively,
    sorted), a glob pattern's matches (``**`` recursive). A name that matches nothing, or a
    folder without images, is a ``ValueError`` saying so; so is no input at all."""
    found: List[str] = []
    for item in inputs:
        name = os.fspath(item)
        if os.path.isdir(name):
            matches = sorted(os.path.join(root, f) for root, _, files in os.walk(name)
                             for f in files if _is_image_name(f))
            if not matches:
                raise ValueError(f"{name}: a folder with no images (looked for "
                                 f"{', '.join(IMAGE_EXTENSIONS)} files, in subfolders too)")
        elif os.path.exists(name):
            matches = [name]
        elif glob.has_magic(name):
            matches = sorted(p for p in glob.glob(name, recursive=True)
                             if os.path.isfile(p) and _is_image_name(p))
            if not matches:
                raise ValueError(f"{name}: the pattern matches no image files")
        else:
            raise ValueError(f"{name}: no such file or folder")
        found.extend(matches)
    if not found:
        raise ValueError("no images given: name image files, folders or glob patterns")
    return list(dict.fromkeys(found))
