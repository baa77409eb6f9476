"""The appendix's multi-scale testing: the Fast R-CNN step on an image pyramid, the RPN at one scale.

The paper's appendix ("multi-scale testing", paraphrased): conv feature maps are computed on an
image pyramid of shorter sides {200, 400, 600, 800, 1000}; two adjacent scales are selected
following "Object Detection Networks on Convolutional Feature Maps" (Ren et al.); RoI pooling and
the layers after it run on the feature maps of these two scales, merged by maxout. It was done
for the Fast R-CNN step only (not the RPN), and not in training.

This module holds the pyramid: ``build_scale_pyramid`` computes the feature maps and
``ScalePyramid`` gives each RoI's feature from its two scales. ``PaperRCNN`` (``.meta_arch``),
detectron2's ``GeneralizedRCNN`` with the same training and weights, builds it at inference when
``MODEL.PAPER_IMPROVEMENTS.TEST_SCALES`` is set, and ``PaperRes5ROIHeads`` (``.roi_heads``) takes
its region features from it. Our readings:

* Scale selection: the two adjacent scales around the one at which the RoI would be
  SCALE_SELECTION_SIZE^2 pixels (SPPnet's rule, which [Ren et al.] extend to two scales); RoIs
  outside the pyramid's range take its two end scales.
* Maxout: "RoI pooling and subsequent layers" run at each of the two scales, so by default each
  RoI is pooled and passed through res5 and average pooling at both, and the two region features
  are merged by an element-wise max (``maxout_after_res5``). The cheaper order, the max of the
  two RoI-pooled res4 maps and res5 once, is the option ``maxout_after_res5=False``.
* The pyramid is resized from the network's input image (as detectron2's
  ``GeneralizedRCNNWithTTA`` does), bilinearly with antialiasing when it shrinks. The paper
  gives shorter sides only; a level's longer side is capped (``max_size``, 4000 by default:
  Detectron's ``TEST.BBOX_AUG.MAX_SIZE``), which the paper's 1000-pixel level of a 600 x 1000
  input (1000 x 1667) never reaches; it bounds the memory of very elongated images.
* Global context comes from the single-scale map (``single_scale``): the scale it was trained
  on, not the pyramid level the scale rule would pick for a whole-image box.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, ImageList


def check_test_scales(scales: Sequence[int]) -> Tuple[int, ...]:
    """The pyramid's shorter sides, ascending; ValueError for a non-positive or repeated one."""
    scales = tuple(int(s) for s in scales)
    if any(s <= 0 for s in scales) or len(set(scales)) != len(scales):
        raise ValueError(f"MODEL.PAPER_IMPROVEMENTS.TEST_SCALES must be distinct positive shorter "
                         f"sides, e.g. [200, 400, 600, 800, 1000]; got {list(scales)}")
    return tuple(sorted(scales))


def select_adjacent_scales(boxes: torch.Tensor, factors: torch.Tensor,
                           target_size: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """For each box (R, 4) in input-image pixels, the indices (lower, upper) of the two adjacent
    pyramid levels (``factors``: ascending resize factors) around the factor that makes the box
    ``target_size``^2 pixels. One level: both 0."""
    if len(factors) == 1:
        zeros = torch.zeros(len(boxes), dtype=torch.long, device=boxes.device)
        return zeros, zeros
    widths = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    heights = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    ideal = target_size / torch.sqrt(widths * heights)
    upper = torch.searchsorted(factors.to(ideal), ideal.contiguous()).clamp(1, len(factors) - 1)
    return upper - 1, upper


class ScalePyramid:
    """One image batch's feature maps at several scales: ``maps[i][k]`` is image i's (1, C, H, W)
    map at resize factor ``factors[i][k]`` of the network's input image; ``single_scale`` the
    batch's single-scale features (the backbone's outputs on the input image). Passed to
    ``PaperRes5ROIHeads`` in place of the single-scale features."""

    def __init__(self, maps: List[List[torch.Tensor]], factors: List[torch.Tensor],
                 target_size: float, single_scale: Dict[str, torch.Tensor],
                 maxout_after_res5: bool = True):
        self.maps, self.factors, self.target_size = maps, factors, target_size
        self.single_scale, self.maxout_after_res5 = single_scale, maxout_after_res5

    def region_features(self, pooler, boxes: List[Boxes],
                        head: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The features of all images' boxes, in order: each box at its two selected scales
        merged by an element-wise max; ``head`` (res5 and average pooling) runs on each scale's
        pooled maps before the max (``maxout_after_res5``) or once on their max."""
        if self.maxout_after_res5:
            return self._maxout(pooler, boxes, head)
        return head(self._maxout(pooler, boxes, lambda pooled: pooled))

    def _maxout(self, pooler, boxes: List[Boxes],
                head: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``head`` of each box's RoI-pooled map at its two scales (its coordinates scaled to
        each), merged by an element-wise max."""
        merged_per_image = []
        for maps, factors, image_boxes in zip(self.maps, self.factors, boxes):
            lower, upper = select_adjacent_scales(image_boxes.tensor, factors, self.target_size)
            merged: Optional[torch.Tensor] = None
            for level, (feature_map, factor) in enumerate(zip(maps, factors.tolist())):
                index = torch.nonzero((lower == level) | (upper == level)).squeeze(1)
                if len(index) == 0:
                    continue
                scaled = Boxes(image_boxes.tensor[index] * factor)
                level_features = head(pooler([feature_map], [scaled]))
                if merged is None:
                    merged = level_features.new_full(
                        (len(image_boxes),) + level_features.shape[1:], float("-inf"))
                merged[index] = torch.maximum(merged[index], level_features)
            if merged is None:  # no boxes in this image
                merged = head(pooler([maps[0]], [image_boxes]))
            merged_per_image.append(merged)
        return torch.cat(merged_per_image, dim=0)


def pyramid_factor(height: int, width: int, scale: int, max_size: int = 0) -> float:
    """The resize factor that gives an image of ``height`` x ``width`` the shorter side
    ``scale``, lowered where the longer side would exceed ``max_size`` (0: no cap)."""
    factor = scale / min(height, width)
    if max_size and max(height, width) * factor > max_size:
        factor = max_size / max(height, width)
    return factor


def build_scale_pyramid(backbone, images: ImageList, features: Dict[str, torch.Tensor],
                        feature_name: str, scales: Sequence[int], target_size: float,
                        maxout_after_res5: bool = True, max_size: int = 0) -> ScalePyramid:
    """The pyramid of each image's ``feature_name`` map at shorter sides ``scales``, each level's
    longer side at most ``max_size`` (0: no cap; ``pyramid_factor``). ``features``: the
    backbone's single-scale outputs on ``images``; a scale equal to the input's shorter side
    reuses them, so a one-scale pyramid at the test scale is exactly single-scale testing. Levels
    that the cap makes equal share one map."""
    maps, factors = [], []
    for i, (height, width) in enumerate(images.image_sizes):
        image_maps, image_factors = [], []
        for scale in scales:
            factor = pyramid_factor(height, width, scale, max_size)
            if abs(factor - 1.0) < 1e-6:
                image_maps.append(features[feature_name][i:i + 1])
            elif image_factors and abs(factor - image_factors[-1]) < 1e-6:
                image_maps.append(image_maps[-1])  # capped like the level before
            else:
                image = images.tensor[i:i + 1, :, :height, :width]
                size = (max(1, round(height * factor)), max(1, round(width * factor)))
                resized = F.interpolate(image, size=size, mode="bilinear", align_corners=False,
                                        antialias=factor < 1.0)
                padded = ImageList.from_tensors([resized[0]], backbone.size_divisibility)
                image_maps.append(backbone(padded.tensor)[feature_name])
            image_factors.append(factor)
        maps.append(image_maps)
        factors.append(torch.tensor(image_factors, device=features[feature_name].device))
    return ScalePyramid(maps, factors, target_size, features, maxout_after_res5)
