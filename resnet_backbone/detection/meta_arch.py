"""``PaperRCNN``: detectron2's ``GeneralizedRCNN`` with the appendix's multi-scale testing.

A meta-architecture (``META_ARCH_REGISTRY``), so it lives apart from the pyramid it builds
(``.multiscale``) and the head that pools from it (``.roi_heads``); both are imported here and
neither imports this module. Training, weights and single-scale inference are
``GeneralizedRCNN``'s; with ``MODEL.PAPER_IMPROVEMENTS.TEST_SCALES`` set, the RPN runs on the
single-scale image and the Fast R-CNN step on the pyramid.
"""
from typing import Sequence

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN

from .multiscale import build_scale_pyramid, check_test_scales
from .roi_heads import PaperRes5ROIHeads


@META_ARCH_REGISTRY.register()
class PaperRCNN(GeneralizedRCNN):
    """``GeneralizedRCNN`` with the paper's multi-scale testing (``test_scales``, from
    ``MODEL.PAPER_IMPROVEMENTS.TEST_SCALES``): proposals from the single-scale image, region
    features from the image pyramid (``maxout_after_res5``: where the two scales are merged;
    ``pyramid_max_size``: the cap on a level's longer side; see ``.multiscale``). Training,
    weights and single-scale inference are ``GeneralizedRCNN``'s; the ROI heads must be
    ``PaperRes5ROIHeads``."""

    @configurable
    def __init__(self, *, test_scales: Sequence[int] = (), scale_selection_size: float = 224,
                 maxout_after_res5: bool = True, pyramid_max_size: int = 4000, **kwargs):
        super().__init__(**kwargs)
        self.test_scales = check_test_scales(test_scales)
        self.scale_selection_size = float(scale_selection_size)
        self.maxout_after_res5 = bool(maxout_after_res5)
        if int(pyramid_max_size) < 0:
            raise ValueError(f"MODEL.PAPER_IMPROVEMENTS.PYRAMID_MAX_SIZE must be >= 0 (0: no cap); "
                             f"got {pyramid_max_size}")
        self.pyramid_max_size = int(pyramid_max_size)
        if self.test_scales and not isinstance(self.roi_heads, PaperRes5ROIHeads):
            raise ValueError("Multi-scale testing (MODEL.PAPER_IMPROVEMENTS.TEST_SCALES) needs "
                             "MODEL.ROI_HEADS.NAME PaperRes5ROIHeads (the C4 head); got "
                             f"{type(self.roi_heads).__name__}")

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        improvements = cfg.MODEL.PAPER_IMPROVEMENTS
        ret.update(test_scales=improvements.TEST_SCALES,
                   scale_selection_size=improvements.SCALE_SELECTION_SIZE,
                   maxout_after_res5=improvements.MAXOUT_AFTER_RES5,
                   pyramid_max_size=improvements.PYRAMID_MAX_SIZE)
        return ret

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        if not self.test_scales or detected_instances is not None:
            return super().inference(batched_inputs, detected_instances, do_postprocess)
        assert not self.training
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        if self.proposal_generator is not None:
            proposals, _ = self.proposal_generator(images, features, None)
        else:
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
        name = self.roi_heads.in_features[0]
        pyramid = build_scale_pyramid(self.backbone, images, features, name, self.test_scales,
                                      self.scale_selection_size, self.maxout_after_res5,
                                      self.pyramid_max_size)
        results, _ = self.roi_heads(images, pyramid, proposals, None)
        if do_postprocess:
            return GeneralizedRCNN._postprocess(results, batched_inputs, images.image_sizes)
        return results
