"""``resnet_backbone.data.image_io``: how a user's image becomes (H, W, 3) uint8 RGB pixels (EXIF
orientation, grayscale, alpha, 16 bits, CMYK, BGR arrays, tensors), what a file that cannot be
read says, and which files ``find_images`` picks."""
import numpy as np
import pytest
import torch
from PIL import Image

from resnet_backbone.data.image_io import ImageReadError, find_images, load_image

#: EXIF tag of the orientation; 6: the stored pixels are shown rotated 90 degrees clockwise.
ORIENTATION, ROTATE_CLOCKWISE = 0x0112, 6


def pattern(height=24, width=40) -> np.ndarray:
    """A smooth colour ramp (JPEG keeps it within a few levels), asymmetric in both axes."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 255 // width, ys * 255 // height, (xs + 2 * ys) * 255 // (width + 2 * height)],
                    axis=2).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with orientation 6 is read upright: the stored pixels
    rotated clockwise, from a file and from an opened PIL image alike."""
    path = tmp_path / "sideways.jpg"
    exif = Image.Exif()
    exif[ORIENTATION] = ROTATE_CLOCKWISE
    Image.fromarray(pattern()).save(path, exif=exif, quality=95)
    with Image.open(path) as im:
        assert im.getexif()[ORIENTATION] == ROTATE_CLOCKWISE  # a real tag, as a camera writes
        stored = np.asarray(im.convert("RGB"))
    upright = np.rot90(stored, k=-1)
    assert load_image(path).shape == (40, 24, 3)
    np.testing.assert_array_equal(load_image(path), upright)
    with Image.open(path) as im:
        np.testing.assert_array_equal(load_image(im), upright)


def test_grayscale_rgba_and_palette_become_rgb(tmp_path):
    rgb = pattern()
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), np.repeat(rgb[:, :, :1], 3, 2))
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    np.testing.assert_array_equal(load_image(tmp_path / "alpha.png"), rgb)  # alpha dropped
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").shape == rgb.shape


def test_16_bit_png_keeps_its_top_byte(tmp_path):
    """A 16-bit grayscale PNG (scans, microscopy) is scaled to 8 bits by its top byte. (detectron2's
    ``read_image`` calls PIL's ``convert("RGB")``, which clips every value above 255: such an
    image becomes nearly all white. We differ from it on purpose.)"""
    values = (np.arange(24 * 40).reshape(24, 40) * 68).astype(np.uint16)  # 0 .. 65212
    Image.fromarray(values).save(tmp_path / "deep.png")
    expected = np.repeat((values >> 8).astype(np.uint8)[:, :, None], 3, 2)
    np.testing.assert_array_equal(load_image(tmp_path / "deep.png"), expected)
    np.testing.assert_array_equal(load_image(values), expected)  # a uint16 array: the same


def test_cmyk_jpeg_becomes_its_rgb(tmp_path):
    rgb = pattern()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    with Image.open(tmp_path / "print.jpg") as im:
        assert im.mode == "CMYK"
    got = load_image(tmp_path / "print.jpg").astype(int)
    assert np.abs(got - rgb.astype(int)).mean() < 3  # JPEG's loss only


def test_arrays_and_tensors(tmp_path):
    rgb = pattern()
    np.testing.assert_array_equal(load_image(rgb[:, :, ::-1], array_format="BGR"), rgb)  # cv2
    np.testing.assert_array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32)), rgb)
    with pytest.raises(ImageReadError, match=r"shape \(3, 24, 40\)"):
        load_image(np.zeros((3, 24, 40), np.uint8))  # channels first: a tensor's layout
    with pytest.raises(ValueError, match="array_format"):
        load_image(rgb, array_format="GBR")


def test_unreadable_files_are_named_with_the_reason(tmp_path):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(pattern(64, 64)).save(whole)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:300])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    for name, reason in [("cut.jpg", "truncated"), ("empty.png", "empty file"),
                         ("notes.jpg", "not an image"), ("missing.png", "no such file")]:
        with pytest.raises(ImageReadError, match=reason) as e:
            load_image(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name))


def test_find_images_takes_files_folders_and_globs(tmp_path):
    for name in ("b.png", "a.JPG", "sub/c.jpeg", "notes.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    folder = [str(tmp_path / n) for n in ("a.JPG", "b.png", "sub/c.jpeg")]
    assert find_images([tmp_path]) == folder
    assert find_images([tmp_path / "notes.txt", str(tmp_path / "*.png"), tmp_path]) == \
        [str(tmp_path / "notes.txt"), str(tmp_path / "b.png"), folder[0], folder[2]]
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="a folder with no images"):
        find_images([tmp_path / "none"])
    with pytest.raises(ValueError, match="matches no image files"):
        find_images([str(tmp_path / "*.gif")])
