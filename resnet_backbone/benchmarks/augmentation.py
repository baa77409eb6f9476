"""How many training images per second one CPU core prepares for the ImageNet recipe: the
paper's augmentation as defined (``ImageNetTrainTransform``), the trainer's
(``FastImageNetTrainTransform``: crop before resize, reduced JPEG decoding, uint8 out), and
torchvision's ``RandomResizedCrop`` + flip for reference, with JPEG decoding alone beside them;
all on the same JPEG files, interleaved in one process on one thread (``tools/benchmark.py
--rows augmentation``)."""
import io
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision.transforms import v2 as T

from ..classification.transforms import (DeviceNormalizer, FastImageNetTrainTransform,
                                         ImageNetTrainTransform, Normalizer)
from ..data.synthetic import make_synthetic
from .harness import Bench


def write_jpegs(folder: Path, count: int, width: int, height: int, quality: int) -> List[Path]:
    """``count`` textured RGB JPEGs (the synthetic classes' shapes, upscaled, with noise)."""
    rng = np.random.default_rng(0)
    images = make_synthetic(count, image_size=64, seed=0).images
    paths = []
    for i, img in enumerate(images):
        pixels = np.asarray(Image.fromarray(img.permute(1, 2, 0).numpy()).resize((width, height),
                                                                                 Image.BICUBIC), np.int16)
        pixels = (pixels + rng.integers(-20, 20, pixels.shape)).clip(0, 255).astype(np.uint8)
        paths.append(folder / f"{i:04d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=quality)
    return paths


def augmentation_pipelines(normalizer: Normalizer) -> Dict[str, Callable[[bytes, torch.Generator], object]]:
    """name -> f(jpeg bytes, generator): the work a loader worker does for one image."""
    paper, fast = ImageNetTrainTransform(normalizer), FastImageNetTrainTransform()
    torchvision_rrc = T.Compose([T.RandomResizedCrop(224, antialias=True), T.RandomHorizontalFlip(),
                                 T.PILToTensor()])
    return {
        "paper definition (float)": lambda data, g: paper(Image.open(io.BytesIO(data)).convert("RGB"), g),
        "ours (crop first, uint8)": lambda data, g: fast(Image.open(io.BytesIO(data)), g),
        "torchvision RandomResizedCrop (uint8)": lambda data, g: torchvision_rrc(
            Image.open(io.BytesIO(data)).convert("RGB")),
        "PIL decode only": lambda data, g: Image.open(io.BytesIO(data)).convert("RGB"),
        "torchvision.io.decode_jpeg only": lambda data, g: torchvision.io.decode_jpeg(
            torch.frombuffer(bytearray(data), dtype=torch.uint8)),
    }


def augmentation_rows(num_images: int = 32, width: int = 500, height: int = 375,
                      quality: int = 90, repeats: int = 5) -> List[dict]:
    """Images per second on one core for each pipeline (median of ``repeats`` passes over the
    files), and the cost of finishing a batch of the fast path (lighting + mean) on this CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image decoders for TorchCodec; still the reference point
        warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
        return _augmentation_rows(num_images, width, height, quality, repeats, threads)


def _augmentation_rows(num_images, width, height, quality, repeats, threads) -> List[dict]:
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files = [p.read_bytes() for p in write_jpegs(Path(tmp), num_images, width, height, quality)]
        normalizer = Normalizer(torch.rand(3, 224, 224) * 255, [1.0, 1.0, 1.0])
        pipelines = augmentation_pipelines(normalizer)

        def over_files(pipeline):
            return lambda: [pipeline(data, torch.Generator().manual_seed(i)) for i, data in enumerate(files)]
        bench = Bench(SimpleNamespace(device="cpu", dtype="fp32", channels_last="off", compile=False,
                                      grid={"repeats": repeats, "warmup": 1}, peak_tflops=None,
                                      classifier_modes=()))
        times = bench.time({name: over_files(p) for name, p in pipelines.items()})
        pixels = torch.randint(0, 256, (64, 3, 224, 224), dtype=torch.uint8)
        finish = DeviceNormalizer(normalizer, "cpu")
        finish_time = bench.time({"finish": lambda: finish(pixels, torch.randn(64, 3))})["finish"][0] / 64
    finally:
        torch.set_num_threads(threads)
    paper = times["paper definition (float)"][0]
    rows = [{"row": "augmentation", "pipeline": name, "images": f"{num_images} JPEG {width}x{height} q{quality}",
             "img_per_s_per_core": round(len(files) / wall, 1), "vs_paper_definition": round(paper / wall, 2)}
            for name, (wall, _) in times.items()]
    rows.append({"row": "augmentation", "pipeline": "ours: finish on CPU (lighting + mean, batch 64)",
                 "images": "224x224 uint8", "img_per_s_per_core": round(1 / finish_time, 1),
                 "vs_paper_definition": None})
    return rows
