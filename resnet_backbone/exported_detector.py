"""Everything a detector needs around its graph to take a user's image: the input contract
(carried in the exported file's metadata), the pre-processing, the mapping of boxes back to the
original image, and running an exported file (ONNX Runtime, TorchScript) without detectron2.

The exported graph (``resnet_backbone.detection.export.DetectorGraph``) takes one float image
``(3, H, W)`` in the model's channel order at its test size and returns boxes in that image's
pixels; normalisation, the network and NMS are inside it. What is outside, and identical for
every runtime (PyTorch, ONNX Runtime, TorchScript), lives here:

1. ``load_image``: any file / PIL / numpy / tensor -> ``(H, W, 3)`` uint8 RGB (EXIF, grayscale,
   RGBA, 16-bit, CMYK handled: ``resnet_backbone.data.image_io``);
2. ``prepare``: resize so that the shorter side is ``min_size`` and the longer at most
   ``max_size`` (detectron2's ``ResizeShortestEdge``: the same output size, and the same PIL
   bilinear resampling of uint8 images, tested against it), flip to BGR for BGR models, float;
3. the graph;
4. ``to_original``: boxes scaled from the resized image to the original one and clipped to it,
   as detectron2's ``detector_postprocess``.

The contract (input format, sizes, class names and their dataset ids) is JSON under the
metadata key ``METADATA_KEY``: an ONNX ``metadata_props`` entry, a TorchScript extra file.
"""
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from .data.image_io import ImageSource, load_image
from .export import load_torchscript, require_onnx

#: The metadata key (ONNX ``metadata_props``) / extra file name (TorchScript) of the contract.
METADATA_KEY = "resnet_backbone.detector"
#: Runtimes of an exported file, by extension.
RUNTIME_OF_EXTENSION = {".onnx": "onnxruntime", ".ts": "torchscript", ".pt": "torchscript"}


@dataclass
class DetectorContract:
    """What a detector's graph expects and what its class indices mean."""

    input_format: str                 # "BGR" or "RGB": the channel order of the graph's input
    min_size: int                     # shorter side at test time (0: no resize)
    max_size: int                     # longer side at most
    class_names: List[str] = field(default_factory=list)
    category_ids: List[int] = field(default_factory=list)  # dataset id of each class (COCO JSON)

    def __post_init__(self):
        if self.input_format not in ("BGR", "RGB"):
            raise ValueError(f"input format {self.input_format!r}: only BGR and RGB detectors "
                             "take a user's images")
        if not self.category_ids:
            self.category_ids = list(range(1, len(self.class_names) + 1))

    def name_of(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, source: str) -> "DetectorContract":
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: its {METADATA_KEY} metadata is not a detector contract "
                             f"({e}); export it again with resnet-export-model") from None


@dataclass
class Detections:
    """One image's detections, boxes ``(N, 4)`` XYXY in the original image's pixels."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_names: List[str]
    image_size: Tuple[int, int]       # (height, width) of the original image

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> "Detections":
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep],
                          [n for n, k in zip(self.class_names, keep) if k], self.image_size)


def resized_shape(height: int, width: int, short: int, max_size: int) -> Tuple[int, int]:
    """``(new_h, new_w)``: the shorter side ``short``, the longer at most ``max_size``, rounded
    as detectron2's ``ResizeShortestEdge.get_output_shape``."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def prepare(rgb: np.ndarray, contract: DetectorContract) -> torch.Tensor:
    """The graph's input for an ``(H, W, 3)`` uint8 RGB image: resized (PIL bilinear, as
    detectron2 resizes uint8 images), in the contract's channel order, ``(3, h, w)`` float32."""
    height, width = rgb.shape[:2]
    if contract.min_size:
        new_h, new_w = resized_shape(height, width, contract.min_size, contract.max_size)
        if (new_h, new_w) != (height, width):
            rgb = np.asarray(Image.fromarray(rgb).resize((new_w, new_h), Image.BILINEAR))
    if contract.input_format == "BGR":
        rgb = rgb[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float()


def to_original(boxes: torch.Tensor, resized_hw: Tuple[int, int],
                original_hw: Tuple[int, int]) -> np.ndarray:
    """Boxes of the resized image in the original image's pixels, clipped to it."""
    boxes = boxes.detach().float().cpu().clone()
    scale_y, scale_x = original_hw[0] / resized_hw[0], original_hw[1] / resized_hw[1]
    boxes[:, 0::2] = (boxes[:, 0::2] * scale_x).clamp(0, original_hw[1])
    boxes[:, 1::2] = (boxes[:, 1::2] * scale_y).clamp(0, original_hw[0])
    return boxes.numpy()


GraphFunction = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class DetectorRunner:
    """``runner(images)``: one image or a list of them (paths, PIL images, numpy ``(H, W, C)``
    arrays in ``array_format`` order, tensors ``(C, H, W)``; or a 4-D batch) -> ``Detections``
    (a list for a list or batch). ``graph``: the prepared image -> ``(boxes, scores, classes)``
    at its size."""

    def __init__(self, graph: GraphFunction, contract: DetectorContract):
        self.graph, self.contract = graph, contract

    def detect(self, rgb: np.ndarray) -> Detections:
        """One ``(H, W, 3)`` uint8 RGB image."""
        x = prepare(rgb, self.contract)
        with torch.no_grad():
            boxes, scores, classes = self.graph(x)
        classes = classes.detach().cpu().numpy().astype(np.int64)
        return Detections(to_original(boxes, tuple(x.shape[1:]), rgb.shape[:2]),
                          scores.detach().float().cpu().numpy(), classes,
                          [self.contract.name_of(int(c)) for c in classes], rgb.shape[:2])

    def __call__(self, images, array_format: str = "RGB"):
        batch = isinstance(images, (list, tuple)) or (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4)
        if batch:  # a list, or a 4-D array / tensor: one Detections per image
            return [self.detect(load_image(x, array_format)) for x in images]
        return self.detect(load_image(images, array_format))


def _onnx_graph(path: str, device: str) -> Tuple[GraphFunction, str]:
    """(graph, metadata JSON) of an ONNX file run by ONNX Runtime (the CUDA provider for a
    ``cuda`` device, when the installed onnxruntime has it)."""
    require_onnx()
    import onnxruntime as ort
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("--device cuda with ONNX Runtime needs onnxruntime-gpu (this "
                             "onnxruntime has no CUDAExecutionProvider); use --device cpu")
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(path, providers=providers)
    meta = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor):
        return tuple(torch.from_numpy(o) for o in session.run(None, {name: x.numpy()}))
    return run, meta


def _torchscript_graph(path: str, device: str) -> Tuple[GraphFunction, str]:
    extra = {METADATA_KEY: ""}
    module = load_torchscript(path, extra).to(device)
    return (lambda x: module(x.to(device))), (extra[METADATA_KEY] or None)


def runtime_of(path: str, runtime: Optional[str] = None) -> str:
    """The runtime that reads ``path``: ``runtime`` if given, else by its extension."""
    if runtime:
        return runtime
    ext = os.path.splitext(path)[1].lower()
    return RUNTIME_OF_EXTENSION.get(ext, "pytorch")


def load_exported_detector(path: str, runtime: Optional[str] = None,
                           device: str = "cpu") -> DetectorRunner:
    """A ``DetectorRunner`` for a detector file written by ``resnet-export-model`` (``.onnx``:
    ONNX Runtime; ``.ts``: TorchScript); its contract comes from the file's metadata."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    runtime = runtime_of(path, runtime)
    if runtime == "onnxruntime":
        graph, meta = _onnx_graph(path, device)
    elif runtime == "torchscript":
        graph, meta = _torchscript_graph(path, device)
    else:
        raise ValueError(f"{path}: runtime {runtime!r} does not read exported files; use "
                         f"onnxruntime (.onnx) or torchscript (.ts)")
    if not meta:
        raise ValueError(f"{path}: no {METADATA_KEY} metadata (exported before version 0.4, or "
                         "not by resnet-export-model); export it again with resnet-export-model "
                         "--config-file ... --weights ...")
    return DetectorRunner(graph, DetectorContract.from_json(meta, path))


__all__ = ["METADATA_KEY", "DetectorContract", "Detections", "DetectorRunner", "resized_shape",
           "prepare", "to_original", "load_exported_detector", "runtime_of", "ImageSource"]
