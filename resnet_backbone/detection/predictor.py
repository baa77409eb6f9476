"""``Predictor``: a trained detector (a config plus its ``tools/train_det.py`` weights) applied to
a user's images, the way detectron2's ``DefaultPredictor`` is, with the package's image reading.

    from resnet_backbone.detection import Predictor
    predictor = Predictor("output/demo_shapes/config.yaml", "output/demo_shapes/model_final.pth")
    detections = predictor("photo.jpg")          # or a list; PIL, numpy (H, W, C), tensors (C, H, W)
    detections.boxes, detections.scores, detections.class_names   # boxes in the photo's pixels

It is a ``resnet_backbone.exported_detector.DetectorRunner`` whose graph is the eager PyTorch
model (``.export.DetectorGraph``): the reading, resizing and box mapping are the same code that
runs an exported ONNX / TorchScript file (``load_exported_detector``), so the two runtimes see
identical inputs and their detections can be compared one to one.
"""
from typing import Sequence

import torch

from ..distributed import cpu_if_no_cuda
from ..exported_detector import DetectorRunner
from ..third_party import quiet_detectron2_inference
from .export import DetectorGraph, build_detector


class Predictor(DetectorRunner):
    """A detector for a user's images (see the module docstring). ``config``: a detection config
    (YAML, or LazyConfig ``.py``), e.g. the ``config.yaml`` a training run wrote; ``weights``: a
    checkpoint of that run; ``opts``: config overrides (``KEY VALUE`` pairs for YAML,
    ``key=value`` for ``.py``), e.g. ``MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3``. Class names come
    from the checkpoint (recorded by ``tools/train_det.py``) or, for older checkpoints, from the
    config's registered test dataset; otherwise ``"class <i>"``."""

    def __init__(self, config: str, weights: str, device: str = "cpu", opts: Sequence[str] = ()):
        model, contract = build_detector(config, weights, opts)
        self.device = cpu_if_no_cuda(device, "--device cpu")
        self.model = DetectorGraph(model.to(self.device))

        def graph(x: torch.Tensor):
            with quiet_detectron2_inference():
                return self.model(x.to(self.device))
        super().__init__(graph, contract)
