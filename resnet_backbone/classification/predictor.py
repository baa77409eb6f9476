"""Classify images with a trained classifier: ``Predictor(weights)(images)`` -> the top-k classes
of each image, with their names and probabilities.

    predictor = Predictor("output/imagenet/resnet50/model_final.pth", mode="ten_crop", topk=3)
    predictor("cat.jpg")                 # [Prediction(281, 'tabby', 0.83), ...]
    predictor(["a.jpg", pil_image, cv2_image], array_format="BGR")   # one list per image

The weights file says how to see an image (``classifier_file.load_classifier``: network,
channel order, pixel mean and std, test sizes, class names); the test views are the paper's
(Sec. 3.4, ``TestViews``): ``center`` (resize + center crop), ``ten_crop`` (the 4 corners and
the center, and of the flipped image) and ``multi_scale`` (the whole image, fully convolutional,
at each of TEST.SCALES, and flipped), with the sizes the run's own evaluation used. An image's
probabilities are the softmax averaged over its views: the evaluation's scoring
(``evaluate.average_over_views``), so the predictor and ``evaluate`` agree on the same images.

Images: file paths, PIL images, numpy arrays ``(H, W[, C])`` (``array_format`` "RGB" or "BGR"),
tensors ``(C, H, W)``, one or a list (or a 4-D array / tensor: a batch); read by
``resnet_backbone.data.image_io.load_image`` (EXIF orientation, grayscale, alpha, 16-bit, CMYK).
A file that cannot be read is an ``ImageReadError`` (a ``ValueError``) naming it and why.
"""
import os
from typing import List, NamedTuple, Sequence, Union

import numpy as np
import torch

from ..data.image_io import ImageSource, load_image
from ..distributed import cpu_if_no_cuda
from .classifier_file import ClassifierFile, load_classifier
from .config import EVAL_MODES
from .evaluate import average_over_views, class_probabilities
from .transforms import Normalizer, TestViews


class Prediction(NamedTuple):
    """One of an image's top-k classes."""

    class_index: int
    class_name: str
    probability: float


def _as_list(images) -> List:
    """A list of single images from one image, a list of them, or a 4-D batch."""
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


def _is_batch(images) -> bool:
    return isinstance(images, (list, tuple)) or (
        isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4)


class Predictor:
    """Top-k classes of images, from any classifier file the trainers or
    ``resnet-convert-weights`` write (see the module docstring)."""

    def __init__(self, weights: Union[str, os.PathLike], device: str = "cpu", mode: str = "center",
                 topk: int = 5):
        if mode not in EVAL_MODES:
            raise ValueError(f"mode {mode!r} is not valid; valid choices: {', '.join(EVAL_MODES)}")
        if topk < 1:
            raise ValueError(f"topk must be at least 1; got {topk}")
        self.file: ClassifierFile = load_classifier(weights)
        self.device = cpu_if_no_cuda(device, "device cpu")
        self.model = self.file.model.to(self.device)
        self.mode, self.topk = mode, min(topk, len(self.file.classes))
        cfg = self.file.cfg
        self.views = TestViews(Normalizer(self.file.pixel_mean, self.file.pixel_std),
                               self.file.resize, cfg.TEST.CROP_SIZE, cfg.TEST.SCALES,
                               cfg.TEST.MULTI_SCALE_FLIP)

    @property
    def classes(self) -> List[str]:
        return self.file.classes

    def describe(self) -> str:
        """One line: the network, the preprocessing from its file and the test views."""
        f, v = self.file, self.views
        sizes = (f"scales {v.scales}{' and flipped' if v.flip else ''}" if self.mode == "multi_scale"
                 else f"shorter side {v.resize}" + (f", crop {v.crop}" if v.crop else ""))
        mean = f.pixel_mean.flatten(1).mean(1).tolist()
        kind = "per-pixel mean image" if f.pixel_mean.shape[-2:] != (1, 1) else "mean"
        return (f"{f.source}: {len(f.classes)} classes; {self.mode} ({sizes}); {f.input_format} "
                f"input, {kind} {[round(m, 2) for m in mean]}, std {[round(s, 3) for s in f.pixel_std]}")

    def _pixels(self, rgb: np.ndarray) -> torch.Tensor:
        """(3, H, W) uint8 in the network's channel order."""
        rgb = rgb if rgb.flags.writeable else rgb.copy()  # PIL's arrays are read-only
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
        return (x.flip(0) if self.file.input_format == "BGR" else x).contiguous()

    @torch.inference_mode()
    def probabilities_of_arrays(self, rgb_images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, classes) probabilities of ``(H, W, 3)`` uint8 RGB arrays (``load_image``'s
        output). Center views of one size run as one batch; the other modes image by image."""
        views = [self.views(self.mode, self._pixels(rgb)) for rgb in rgb_images]

        def probabilities(x: torch.Tensor) -> torch.Tensor:
            return class_probabilities(self.model, x, device=self.device).cpu()

        out = [None] * len(views)
        if self.mode == "center":
            groups = {}
            for i, v in enumerate(views):
                groups.setdefault(tuple(v.shape), []).append(i)
            for indices in groups.values():
                scores = average_over_views(probabilities, [views[i] for i in indices], self.mode)
                for i, row in zip(indices, scores):
                    out[i] = row
        else:
            for i, v in enumerate(views):
                out[i] = average_over_views(probabilities, [v], self.mode)[0]
        num_classes = len(self.file.classes)
        return torch.stack(out) if out else torch.zeros(0, num_classes)

    def probabilities(self, images, array_format: str = "RGB") -> torch.Tensor:
        """(N, classes) class probabilities of one image or several (any ``load_image`` source)."""
        return self.probabilities_of_arrays([load_image(x, array_format) for x in _as_list(images)])

    def top(self, probabilities: torch.Tensor) -> List[List[Prediction]]:
        """The top-k ``Prediction`` s of each row of ``probabilities``."""
        values, indices = probabilities.topk(self.topk, dim=1)
        return [[Prediction(int(i), self.file.classes[int(i)], float(p)) for p, i in zip(vs, ix)]
                for vs, ix in zip(values.tolist(), indices.tolist())]

    def predict_arrays(self, rgb_images: Sequence[np.ndarray]) -> List[List[Prediction]]:
        """Top-k of each ``(H, W, 3)`` uint8 RGB array (what ``cli.prediction.predict_files``
        hands over)."""
        return self.top(self.probabilities_of_arrays(rgb_images))

    def __call__(self, images: Union[ImageSource, Sequence[ImageSource]],
                 array_format: str = "RGB") -> Union[List[Prediction], List[List[Prediction]]]:
        """The top-k of one image (a list of ``Prediction``), or of each image of a list or
        batch (a list of such lists)."""
        result = self.top(self.probabilities(images, array_format))
        return result if _is_batch(images) else result[0]
