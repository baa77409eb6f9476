"""The classification augmentation (``resnet_backbone.classification.transforms``): the ImageNet
and CIFAR training transforms, checked against direct computations, and the fast ImageNet
transform against the step-by-step definition."""
import numpy as np
import torch
from PIL import Image

from resnet_backbone.classification.transforms import (CifarTrainTransform, DeviceNormalizer,
                                                       FastImageNetTrainTransform, ImageNetTrainTransform,
                                                       Normalizer)
from resnet_backbone.data.synthetic import make_synthetic


def test_imagenet_train_transform_is_reproducible_and_in_range():
    img = Image.fromarray(make_synthetic(1, image_size=64).images[0].permute(1, 2, 0).numpy()).resize((90, 60))
    norm = Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])
    t = ImageNetTrainTransform(norm, scale=(40, 56), crop=32, pca_std=0.1)
    a = t(img, torch.Generator().manual_seed(7))
    assert a.shape == (3, 32, 32) and torch.equal(a, t(img, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, t(img, torch.Generator().manual_seed(8)))
    plain = ImageNetTrainTransform(norm, scale=(40, 56), crop=32, pca_std=0.0)
    diff = a - plain(img, torch.Generator().manual_seed(7))  # PCA lighting: one shift per channel
    assert torch.allclose(diff, diff[:, :1, :1].expand_as(diff), atol=1e-4) and diff.abs().max() > 0


def jpeg_file(tmp_path, width: int, height: int):
    """A textured RGB JPEG (quality 90) of the given size."""
    rng = np.random.default_rng(0)
    base = make_synthetic(1, image_size=64).images[0].permute(1, 2, 0).numpy()
    pixels = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), np.int16)
    pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / f"{width}x{height}.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_fast_imagenet_transform_gives_the_papers_crops_flips_and_colours(tmp_path):
    """Crop-before-resize with uint8 output, lighting and mean on the device: for the same
    per-sample seed, the same crop box, flip and colour shift as the step-by-step definition,
    so the images agree up to the uint8 rounding of the resized pixels."""
    path = jpeg_file(tmp_path, 500, 375)
    mean = torch.rand(3, 224, 224) * 255  # a per-pixel mean image, as the paper subtracts
    norm = Normalizer(mean, [1, 1, 1])
    reference, fast = ImageNetTrainTransform(norm), FastImageNetTrainTransform()
    finish = DeviceNormalizer(norm, "cpu")
    flips = set()
    for seed in range(12):
        expected = reference(Image.open(path).convert("RGB"), torch.Generator().manual_seed(seed))
        pixels, shift = fast(Image.open(path), torch.Generator().manual_seed(seed))
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 224, 224)
        got = finish(pixels[None], shift[None])[0]
        diff = (got - expected).abs()
        # measured: mean 0.007 to 0.09, max 1.0 (bounds 0.25 and 1.5, uint8 rounding)
        assert diff.mean() < 0.25 and diff.max() <= 1.5, (seed, diff.mean(), diff.max())
        flips.add(FastImageNetTrainTransform().plan(500, 375, torch.Generator().manual_seed(seed)).flip)
    assert flips == {False, True}


def test_fast_imagenet_transform_decodes_large_jpegs_at_reduced_size(tmp_path):
    """A 1600x1200 JPEG whose crop shrinks 4x or more (shorter side 256..300) is decoded at 1/4
    scale (PIL draft): the same box of the same scene, so the result stays close to the
    definition's."""
    path = jpeg_file(tmp_path, 1600, 1200)
    norm = Normalizer(torch.zeros(3, 1, 1), [1, 1, 1])
    reference = ImageNetTrainTransform(norm, scale=(256, 300), pca_std=0.0)
    fast = FastImageNetTrainTransform(scale=(256, 300), pca_std=0.0)
    opened = Image.open(path)
    pixels, _ = fast(opened, torch.Generator().manual_seed(0))
    assert opened.size == (400, 300)  # decoded at a quarter of the size
    expected = reference(Image.open(path).convert("RGB"), torch.Generator().manual_seed(0))
    diff = (pixels.float() - expected).abs().mean()
    assert diff < 4, diff  # measured: mean |difference| 0.9 to 1.4 grey levels, 5 seeds (bound 4)


def test_fast_imagenet_transform_on_tensors_matches_the_plan():
    """uint8 tensors (the synthetic sets) take the same draws; the crop is the plan's box."""
    img = make_synthetic(1, image_size=64).images[0]
    fast = FastImageNetTrainTransform(scale=(80, 96), crop=64, pca_std=0.1)
    pixels, shift = fast(img, torch.Generator().manual_seed(5))
    plan = fast.plan(64, 64, torch.Generator().manual_seed(5))
    assert pixels.shape == (3, 64, 64) and pixels.dtype == torch.uint8
    assert torch.equal(shift, plan.shift) and shift.abs().max() > 0


def test_cifar_transform_is_a_window_of_the_padded_mean_subtracted_image():
    ds = make_synthetic(2)
    mean = ds.images.float().mean(0)
    x = CifarTrainTransform(Normalizer(mean, [1, 1, 1]), pad=4, flip=False)(ds.images[0], torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(ds.images[0].float() - mean, (4, 4, 4, 4))
    windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(x, w) for w in windows)

