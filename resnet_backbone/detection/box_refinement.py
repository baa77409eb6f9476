"""The appendix's box refinement, after its region features are computed: which box each region
is refined from, and how the original and refined predictions become detections.

The paper's appendix ("box refinement", after Gidaris & Komodakis' iterative localisation,
paraphrased): at inference, a new feature is pooled from each regressed box and gives a new score
and a new box; these 300 new predictions and the 300 original ones are merged; NMS at IoU 0.3 on
the union, then box voting. The head (``PaperRes5ROIHeads``) computes the two sets of
predictions; this module picks the box to refine and merges the union.

The union goes through detectron2's own ``fast_rcnn_inference_single_image`` (score threshold,
per-class NMS, top-k), so with voting off the only difference from the baseline is the union.
"""
from typing import Optional, Tuple

import torch
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference_single_image
from detectron2.structures import Boxes, Instances, pairwise_iou


def top_class_boxes(boxes: torch.Tensor, probs: torch.Tensor,
                    image_size: Tuple[int, int]) -> Boxes:
    """Each region's regressed box for its highest-scoring object class, clipped to the image:
    the box a new feature is pooled from. ``boxes``: (R, K*4) class-specific or (R, 4)
    class-agnostic (``predict_boxes``); ``probs``: (R, K+1), background last (``predict_probs``).
    """
    if boxes.shape[1] == 4:
        chosen = boxes
    else:
        per_class = boxes.view(boxes.shape[0], boxes.shape[1] // 4, 4)  # R may be 0
        best = probs[:, :-1].argmax(dim=1)
        chosen = per_class[torch.arange(boxes.shape[0], device=boxes.device), best]
    chosen = Boxes(chosen.clone())
    chosen.clip(image_size)
    return chosen


def box_voting(detections: Instances, boxes: torch.Tensor, probs: torch.Tensor,
               score_thresh: float, vote_thresh: float) -> Instances:
    """Replace each detection's box by the score-weighted mean of the boxes of its class, among
    all predictions (``boxes`` (R, K*4) or (R, 4), ``probs`` (R, K+1)) above ``score_thresh``,
    that overlap it by at least ``vote_thresh`` IoU. Scores are kept (Detectron's "ID" scoring).
    A detection votes for itself (unless its box has no area: then it stays as it is)."""
    if len(detections) == 0:
        return detections
    scores = probs[:, :-1]
    num_classes = scores.shape[1]
    per_class = boxes.view(boxes.shape[0], -1, 4).expand(-1, num_classes, -1)
    voters = Boxes(per_class.reshape(-1, 4).clone())
    voters.clip(detections.image_size)  # as the detections were
    voter_scores = scores.reshape(-1)
    voter_classes = torch.arange(num_classes, device=scores.device).repeat(scores.shape[0])
    keep = (voter_scores > score_thresh) & torch.isfinite(voters.tensor).all(dim=1)
    voters, voter_scores, voter_classes = voters[keep], voter_scores[keep], voter_classes[keep]

    same_class = detections.pred_classes[:, None] == voter_classes[None, :]
    votes = (pairwise_iou(detections.pred_boxes, voters) >= vote_thresh) & same_class
    weights = votes * voter_scores[None, :]
    total = weights.sum(dim=1, keepdim=True)
    # A degenerate (zero-area) box overlaps nothing, not even itself: it keeps its box.
    voted = torch.where(total > 0, weights @ voters.tensor / total.clamp(min=1e-12),
                        detections.pred_boxes.tensor)
    result = Instances(detections.image_size)
    result.pred_boxes = Boxes(voted)
    result.scores = detections.scores
    result.pred_classes = detections.pred_classes
    return result


def merge_refined_predictions(boxes: torch.Tensor, probs: torch.Tensor,
                              image_size: Tuple[int, int], *, score_thresh: float,
                              nms_thresh: float, topk: int,
                              vote_thresh: Optional[float]) -> Instances:
    """Detections of one image from the union of the original and refined predictions
    (``boxes``/``probs`` concatenated along regions): score threshold, per-class NMS at
    ``nms_thresh``, top-k, then box voting over the union (``vote_thresh`` None: no voting)."""
    detections, _ = fast_rcnn_inference_single_image(boxes, probs, image_size, score_thresh,
                                                     nms_thresh, topk)
    if vote_thresh is None:
        return detections
    return box_voting(detections, boxes, probs, score_thresh, vote_thresh)
