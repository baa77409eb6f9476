"""The paper's C4 detection head (appendix A) as a detectron2 ``ROI_HEADS_REGISTRY`` entry.

RoI pooling happens before conv5_1; conv5_x and global average pooling run per region, and two
sibling layers classify and regress. detectron2's ``Res5ROIHeads`` does exactly that; this
subclass only builds res5 with this package's stage code from ``MODEL.PAPER_RESNET``, so the head
matches the backbone (any depth, basic blocks for ResNet-18/34, shortcut option, plain nets).

``paper_res5`` builds that res5 from plain keywords, for LazyConfig files
(``res5=L(paper_res5)(depth=101)`` in ``L(PaperRes5ROIHeads)(...)``); ``build_res5_head`` reads
the same keywords from a yacs config and calls it.

The head also carries the appendix's improvements (``MODEL.PAPER_IMPROVEMENTS``, all off by
default): global context, box refinement, and the region features of multi-scale testing (a
``ScalePyramid`` from ``PaperRCNN`` in place of the single-scale features).
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from torch import nn

from ..models.layers import msra_init_
from ..models.resnet import build_stage, imagenet_stage_plans
from .backbone import config_errors, paper_resnet_options
from .box_refinement import merge_refined_predictions, top_class_boxes
from .multiscale import ScalePyramid


def res5_out_channels(depth: int) -> int:
    """The width of conv5_x (2048 for ResNet-50/101/152, 512 for ResNet-18/34): the box
    predictor's input after global average pooling."""
    return imagenet_stage_plans(depth)[3].out_channels


def paper_res5(depth: int, *, shortcut: str = "B", residual: bool = True,
               stride_in_1x1: bool = True, norm: str = "FrozenBN") -> nn.Sequential:
    """conv5_x of Table 1 (first block stride 2), msra-initialised, as the C4 head's ``res5``.

    The keywords are ``PaperResNet``'s (give the same values as the backbone's so the weights of
    one ImageNet network fill both). Output width: ``res5_out_channels(depth)``.
    """
    res5 = build_stage(imagenet_stage_plans(depth)[3], norm=norm, shortcut=shortcut,
                       residual=residual, stride_in_1x1=stride_in_1x1)
    msra_init_(res5)
    return res5


def build_res5_head(cfg) -> Tuple[nn.Sequential, int]:
    """conv5_x of Table 1 (first block stride 2) and its output width, from MODEL.PAPER_RESNET."""
    options = paper_resnet_options(cfg)
    with config_errors("MODEL.PAPER_RESNET"):
        if cfg.MODEL.PAPER_RESNET.RES5_DILATION != 1:
            raise ValueError("RES5_DILATION must be 1 with the C4 res5 head (PaperRes5ROIHeads): "
                             "res5 runs on pooled regions; dilation is for a res5 in the backbone")
        return paper_res5(**options), res5_out_channels(options["depth"])


Features = Union[Dict[str, torch.Tensor], ScalePyramid]


@ROI_HEADS_REGISTRY.register()
class PaperRes5ROIHeads(Res5ROIHeads):
    """``Res5ROIHeads`` whose res5 is the paper's conv5_x (``MODEL.PAPER_RESNET``), with the
    appendix's improvements as options.

    The pooled size is ``MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION`` (14 in our configs, so the
    stride-2 conv5_1 gives 7x7 maps as conv5_x has on a 224 ImageNet crop). Built from keywords
    (LazyConfig), it is ``Res5ROIHeads`` with ``res5=paper_res5(...)`` and:

    * ``global_context``: the whole image, pooled as one RoI and passed through the same res5
      and average pooling, is concatenated with every region's feature; the box predictor then
      takes twice res5's width (``global_context_predictor`` builds it).
    * ``box_refinement``: at inference, a second pass from each region's regressed box, the
      union of both passes' predictions, NMS at ``refinement_nms_thresh``, then box voting at
      ``box_vote_thresh`` IoU (None: no voting).
    """

    @configurable
    def __init__(self, *, global_context: bool = False, box_refinement: bool = False,
                 refinement_nms_thresh: float = 0.3, box_vote_thresh: Optional[float] = 0.8,
                 **kwargs):
        super().__init__(**kwargs)
        self.global_context, self.box_refinement = global_context, box_refinement
        self.refinement_nms_thresh, self.box_vote_thresh = refinement_nms_thresh, box_vote_thresh
        if (global_context or box_refinement) and self.mask_on:
            raise ValueError("MODEL.PAPER_IMPROVEMENTS (global context, box refinement) are for "
                             "box detection: set MODEL.MASK_ON False")
        if box_vote_thresh is not None and not 0.0 < box_vote_thresh <= 1.0:
            raise ValueError(f"MODEL.PAPER_IMPROVEMENTS.BOX_VOTE_THRESH must be in (0, 1]; got "
                             f"{box_vote_thresh}")
        width = getattr(self.res5[-1], "out_channels", None)
        predictor_width = self.box_predictor.cls_score.in_features
        if width is not None and predictor_width != width * (2 if global_context else 1):
            raise ValueError(f"The box predictor takes {predictor_width} channels; res5 gives "
                             f"{width}{' and global context doubles it' if global_context else ''}"
                             " (build it with global_context_predictor)")

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        improvements = cfg.MODEL.PAPER_IMPROVEMENTS
        if improvements.GLOBAL_CONTEXT:
            ret["box_predictor"] = global_context_predictor(
                cfg, ret["box_predictor"].cls_score.in_features)
        ret.update(global_context=improvements.GLOBAL_CONTEXT,
                   box_refinement=improvements.BOX_REFINEMENT,
                   refinement_nms_thresh=improvements.REFINEMENT_NMS_THRESH,
                   box_vote_thresh=(improvements.BOX_VOTE_THRESH if improvements.BOX_VOTING
                                    else None))
        return ret

    @classmethod
    def _build_res5_block(cls, cfg):
        return build_res5_head(cfg)

    def forward(self, images, features: Features, proposals: List[Instances],
                targets: Optional[List[Instances]] = None):
        if not (self.global_context or self.box_refinement or isinstance(features, ScalePyramid)):
            return super().forward(images, features, proposals, targets)  # the baseline
        del images
        if self.training:
            assert targets
            proposals = self.label_and_sample_proposals(proposals, targets)
            predictions = self.box_predictor(self.region_features(features, proposals))
            return [], self.box_predictor.losses(predictions, proposals)
        predictions = self.box_predictor(self.region_features(features, proposals))
        if not self.box_refinement:
            return self.box_predictor.inference(predictions, proposals)[0], {}
        return self._refine(features, proposals, predictions), {}

    def region_features(self, features: Features, regions: List[Instances]) -> torch.Tensor:
        """Each region's (``proposal_boxes``) feature after res5 and average pooling, with the
        global context feature of its image concatenated when ``global_context``: the whole
        image pooled as one more RoI of the single-scale map (under multi-scale testing too:
        the scale the context was trained on)."""
        boxes = [r.proposal_boxes for r in regions]
        if isinstance(features, ScalePyramid):  # inference only
            x = features.region_features(self.pooler, boxes, self._res5_vector)
            if not self.global_context:
                return x
            context = self._res5_vector(self._pool(features.single_scale, self._whole(regions)))
        elif not self.global_context:
            return self._res5_vector(self._pool(features, boxes))
        else:
            # One res5 pass over the regions and the whole images, one batch of RoIs: with BN in
            # training, they are normalised together (a separate pass would normalise the whole
            # images by a batch of one RoI per image, and mix that into the running statistics).
            pooled = self._pool(features, boxes)
            both = self._res5_vector(torch.cat([pooled, self._pool(features, self._whole(regions))]))
            x, context = both[:len(pooled)], both[len(pooled):]
        counts = torch.tensor([len(b) for b in boxes], device=x.device)
        return torch.cat([x, context.repeat_interleave(counts, dim=0)], dim=1)

    @staticmethod
    def _whole(regions: List[Instances]) -> List[Boxes]:
        """Each image's whole-image box (its size before padding)."""
        device = regions[0].proposal_boxes.device
        return [Boxes(torch.tensor([[0.0, 0.0, w, h]], device=device))
                for h, w in (r.image_size for r in regions)]

    def _res5_vector(self, pooled: torch.Tensor) -> torch.Tensor:
        """RoI-pooled res4 maps (R, C, S, S) -> (R, C') after res5 and global average pooling."""
        return self.res5(pooled).mean(dim=[2, 3])

    def _pool(self, features: Dict[str, torch.Tensor], boxes: List[Boxes]) -> torch.Tensor:
        return self.pooler([features[f] for f in self.in_features], boxes)

    def _refine(self, features: Features, proposals: List[Instances], predictions):
        """Box refinement's second pass from the regressed boxes, and the merged detections."""
        predictor = self.box_predictor
        boxes = predictor.predict_boxes(predictions, proposals)
        probs = predictor.predict_probs(predictions, proposals)
        refined = [Instances(p.image_size, proposal_boxes=top_class_boxes(b, s, p.image_size))
                   for p, b, s in zip(proposals, boxes, probs)]
        second = predictor(self.region_features(features, refined))
        refined_boxes = predictor.predict_boxes(second, refined)
        refined_probs = predictor.predict_probs(second, refined)
        return [merge_refined_predictions(
                    torch.cat([b1, b2]), torch.cat([p1, p2]), r.image_size,
                    score_thresh=predictor.test_score_thresh,
                    nms_thresh=self.refinement_nms_thresh,
                    topk=predictor.test_topk_per_image, vote_thresh=self.box_vote_thresh)
                for b1, p1, b2, p2, r in zip(boxes, probs, refined_boxes, refined_probs, refined)]


def global_context_predictor(cfg, region_width: int) -> FastRCNNOutputLayers:
    """The two sibling layers on a region's feature concatenated with the global context feature
    (2 x ``region_width`` inputs): the only parameters global context adds."""
    return FastRCNNOutputLayers(cfg, ShapeSpec(channels=2 * region_width, height=1, width=1))
