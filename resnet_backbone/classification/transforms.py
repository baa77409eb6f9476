"""The paper's training augmentation and test views.

Training (every random draw comes from a ``torch.Generator`` seeded per sample, so a sample's
augmentation depends only on (seed, epoch, position) and a resumed run sees the same data):

* ImageNet (Sec. 3.4): shorter side uniform in [256, 480], random 224x224 crop of the image or
  its horizontal flip, AlexNet PCA colour augmentation, per-pixel mean subtraction.
  ``ImageNetTrainTransform`` is that definition, step by step (resize the whole image, crop,
  float lighting and normalisation per sample). The trainer runs ``FastImageNetTrainTransform``:
  the same draws give the same crop box, flip and colour shift, but it crops before it resizes
  (the 224 crop of the image resized to shorter side s is the box of side 224 * short / s of
  the original, resized to 224), lets the JPEG decoder skip the detail the resize would discard
  (PIL ``draft``), and returns uint8 pixels and the colour shift: lighting and mean subtraction
  run batched on the training device (``DeviceNormalizer``), and the loader moves a quarter of
  the bytes.
* CIFAR-10 (Sec. 4.2): per-pixel mean subtraction, 4 zero pixels padded on each side (zero is the
  mean after subtraction), random 32x32 crop, random flip.

Test views: ``center`` (optionally resize + center crop; CIFAR: the single original image),
``ten_crop`` (the 4 corners + center of the resized image and of its flip), ``multi_scale``
(the whole image, fully convolutional, shorter side in TEST.SCALES, with its flip).
"""
import math
from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

#: AlexNet "lighting" PCA of ImageNet RGB pixels (scale 0..1), as used by fb.resnet.torch.
PCA_EIGVAL = torch.tensor([0.2175, 0.0188, 0.0045])
PCA_EIGVEC = torch.tensor([[-0.5675, 0.7192, 0.4009],
                           [-0.5808, -0.0045, -0.8140],
                           [-0.5836, -0.6948, 0.4203]])


class Normalizer:
    """Subtract the mean (a per-pixel mean image (3, h, w) or per-channel (3, 1, 1)), divide by
    the std. A mean image is resized bilinearly to inputs of another size (multi-scale test)."""

    def __init__(self, mean: torch.Tensor, std: Sequence[float]):
        self.mean = mean.float()
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self._cache = {}

    def mean_at(self, size) -> torch.Tensor:
        size = tuple(size)
        if self.mean.shape[-2:] in ((1, 1), size):
            return self.mean
        if size not in self._cache:
            self._cache[size] = F.interpolate(self.mean[None], size=size, mode="bilinear",
                                              align_corners=False)[0]
        return self._cache[size]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean_at(x.shape[-2:])) / self.std


def to_uint8_tensor(img) -> torch.Tensor:
    return TF.pil_to_tensor(img) if isinstance(img, Image.Image) else img


def _randint(lo: int, hi: int, g: torch.Generator) -> int:
    """Uniform integer in [lo, hi]."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g))


def color_pca_lighting(x: torch.Tensor, std: float, g: torch.Generator) -> torch.Tensor:
    """AlexNet colour augmentation: ``lighting_shift`` added to every pixel of a 0..255 RGB image."""
    return x + lighting_shift(std, g).view(3, 1, 1)


def lighting_shift(std: float, g: torch.Generator) -> torch.Tensor:
    """AlexNet colour augmentation's per-image RGB shift (0..255 scale): eigvec @ (alpha *
    eigval), alpha ~ N(0, std)."""
    alpha = torch.randn(3, generator=g) * std
    return PCA_EIGVEC @ (alpha * PCA_EIGVAL) * 255


def resized_size(width: int, height: int, shorter: int) -> Tuple[int, int]:
    """(width, height) after resizing the shorter side to ``shorter`` (torchvision's rule)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


class CropPlan(NamedTuple):
    """One sample's draws of the paper's ImageNet augmentation."""

    box: Tuple[float, float, float, float]  # left, top, right, bottom in original pixels
    flip: bool
    shift: torch.Tensor  # RGB lighting shift, (3,), 0..255 scale


def paper_crop_plan(width: int, height: int, scale: Tuple[int, int], crop: int, flip: bool,
                    pca_std: float, g: torch.Generator) -> CropPlan:
    """The draws of ``ImageNetTrainTransform``, in its order: shorter side s, crop corner in the
    resized image, flip, lighting; the crop as a box of the original image."""
    s = _randint(*scale, g)
    rw, rh = resized_size(width, height, s)
    top, left = _randint(0, rh - crop, g), _randint(0, rw - crop, g)
    flipped = flip and torch.rand(1, generator=g).item() < 0.5
    shift = lighting_shift(pca_std, g) if pca_std > 0 else torch.zeros(3)
    sx, sy = width / rw, height / rh
    return CropPlan((left * sx, top * sy, (left + crop) * sx, (top + crop) * sy), flipped, shift)


class ImageNetTrainTransform:
    """The paper's ImageNet augmentation as defined: resize, crop, flip, lighting, normalise."""

    def __init__(self, normalizer: Normalizer, scale=(256, 480), crop: int = 224,
                 pca_std: float = 0.1, flip: bool = True):
        self.normalizer, self.scale, self.crop = normalizer, tuple(scale), crop
        self.pca_std, self.flip = pca_std, flip

    def __call__(self, img, g: torch.Generator) -> torch.Tensor:
        img = TF.resize(img, _randint(*self.scale, g), antialias=True)  # shorter side
        w, h = TF.get_image_size(img)
        top, left = _randint(0, h - self.crop, g), _randint(0, w - self.crop, g)
        img = TF.crop(img, top, left, self.crop, self.crop)
        if self.flip and torch.rand(1, generator=g).item() < 0.5:
            img = TF.hflip(img)
        x = to_uint8_tensor(img).float()
        if self.pca_std > 0:
            x = color_pca_lighting(x, self.pca_std, g)
        return self.normalizer(x)


class FastImageNetTrainTransform:
    """``ImageNetTrainTransform``'s augmentation, cropped before resizing, for the loader:
    returns ``(uint8 crop (3, crop, crop), lighting shift (3,))``; ``DeviceNormalizer`` finishes
    the batch. Takes a PIL image, best one not yet decoded (``wants_unloaded``: the dataset
    hands the opened file, and a JPEG is then decoded at 1/2, 1/4 or 1/8 scale when the crop
    is shrunk by at least that much), or a uint8 tensor."""

    wants_unloaded = True

    def __init__(self, scale=(256, 480), crop: int = 224, pca_std: float = 0.1, flip: bool = True):
        self.scale, self.crop, self.pca_std, self.flip = tuple(scale), crop, pca_std, flip

    def plan(self, width: int, height: int, g: torch.Generator) -> CropPlan:
        return paper_crop_plan(width, height, self.scale, self.crop, self.flip, self.pca_std, g)

    def __call__(self, img: Union[Image.Image, torch.Tensor], g: torch.Generator
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
        if isinstance(img, torch.Tensor):
            return self._from_tensor(img, g)
        width, height = img.size
        plan = self.plan(width, height, g)
        left, top, right, bottom = plan.box
        shrink = min(right - left, bottom - top) / self.crop
        if shrink >= 2 and img.format == "JPEG":
            # the decoder picks the largest 1/2^k scale that keeps at least the requested size
            img.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
            fx, fy = img.size[0] / width, img.size[1] / height
            left, top, right, bottom = left * fx, top * fy, right * fx, bottom * fy
        img = img.convert("RGB").resize((self.crop, self.crop), Image.BILINEAR,
                                        box=(left, top, right, bottom))
        if plan.flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return TF.pil_to_tensor(img), plan.shift

    def _from_tensor(self, img: torch.Tensor, g: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        plan = self.plan(img.shape[-1], img.shape[-2], g)
        left, top, right, bottom = (round(v) for v in plan.box)
        x = TF.resize(img[:, top:bottom, left:right], [self.crop, self.crop], antialias=True)
        return (x.flip(-1) if plan.flip else x).contiguous(), plan.shift


class DeviceNormalizer:
    """The last step of ``FastImageNetTrainTransform``, on a batch on the training device: add
    each image's lighting shift, subtract the mean, divide by the std (float32)."""

    def __init__(self, normalizer: Normalizer, device: Union[str, torch.device]):
        self.mean, self.std = normalizer.mean.to(device), normalizer.std.to(device)

    def __call__(self, pixels: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        x = pixels.float() + shift.to(pixels.device, torch.float32)[:, :, None, None]
        return (x - self.mean) / self.std


class CifarTrainTransform:
    """The paper's CIFAR-10 augmentation (section 4.2): the normalised image padded with
    ``pad`` zeros on each side, a random crop of its own size, a horizontal flip with
    probability 0.5. The draws (``draw``) are shared with the device-held path
    (``device_data.DeviceCifarBatches``), which gives the same batches."""

    def __init__(self, normalizer: Normalizer, pad: int = 4, flip: bool = True):
        self.normalizer, self.pad, self.flip = normalizer, pad, flip

    def draw(self, g: torch.Generator) -> Tuple[int, int, bool]:
        """(top, left, flip) of one sample: the crop's offset in the padded image."""
        top = left = self.pad
        if self.pad:
            top, left = _randint(0, 2 * self.pad, g), _randint(0, 2 * self.pad, g)
        return top, left, bool(self.flip and torch.rand(1, generator=g).item() < 0.5)

    def __call__(self, img, g: torch.Generator) -> torch.Tensor:
        x = self.normalizer(to_uint8_tensor(img))
        h, w = x.shape[-2:]
        top, left, flip = self.draw(g)
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)[:, top:top + h, left:left + w]
        if flip:
            x = x.flip(-1)
        return x.contiguous()


class TestViews:
    """Builds the views of one test image for a given mode."""

    __test__ = False  # a test-time transform, not a pytest test class

    def __init__(self, normalizer: Normalizer, resize: int = 0, crop: int = 0,
                 scales: Sequence[int] = (224, 256, 384, 480, 640), flip: bool = True):
        self.normalizer, self.resize, self.crop = normalizer, resize, crop
        self.scales, self.flip = list(scales), flip

    def _resized(self, img) -> torch.Tensor:
        x = to_uint8_tensor(img)
        return TF.resize(x, self.resize, antialias=True) if self.resize else x

    def center(self, img) -> torch.Tensor:
        """(1, 3, h, w): resize (optional) + center crop (optional)."""
        x = self._resized(img)
        if self.crop:
            x = TF.center_crop(x, self.crop)
        return self.normalizer(x)[None]

    def ten_crop(self, img) -> torch.Tensor:
        """(10, 3, c, c): corners + center of the image, then of its horizontal flip."""
        x = self._resized(img)
        crop = self.crop or min(x.shape[-2:])
        return torch.stack([self.normalizer(v) for v in TF.ten_crop(x, crop)])

    def multi_scale(self, img) -> List[torch.Tensor]:
        """One (1 or 2, 3, h, w) tensor per scale: the whole image with shorter side s (+ flip)."""
        x = to_uint8_tensor(img)
        views = []
        for s in self.scales:
            v = self.normalizer(TF.resize(x, s, antialias=True))
            views.append(torch.stack([v, v.flip(-1)]) if self.flip else v[None])
        return views

    def __call__(self, mode: str, img):
        return getattr(self, mode)(img)
