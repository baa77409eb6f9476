# Table 10 (appendix of arXiv 1512.03385), "baseline+++", VOC 2007 test: paper mAP 85.6
# (baseline 76.4), trained on COCO then fine-tuned on VOC 07+12 ("COCO+07+12").
# LazyConfig of faster_rcnn_R_101_C4_voc0712_plus3.yaml, the same values (tested). Fine-tunes
# the model of faster_rcnn_R_101_C4_coco2014_refine_context(.py/.yaml): its backbone, res5 and
# RPN load (so the anchors are the COCO model's 4 sizes x 3 ratios); its 81-class box predictor
# is trained anew. Box refinement, global context and the multi-scale test pyramid as the COCO
# rows. The fine-tuning schedule is not in the paper: the VOC baseline's (ours).
# Metric: PascalVOCDetectionEvaluator AP50 (11-point VOC 2007 mAP).
from detectron2.config import LazyCall as L

from resnet_backbone.detection import PaperRCNN

from .faster_rcnn_R_101_C4_voc0712 import dataloader, lr_multiplier, model, optimizer, train

model = L(PaperRCNN)(**{k: v for k, v in model.items() if k != "_target_"},
                     test_scales=[200, 400, 600, 800, 1000], scale_selection_size=224,
                     maxout_after_res5=True, pyramid_max_size=4000)
model.proposal_generator.anchor_generator.sizes = [[64, 128, 256, 512]]
model.proposal_generator.head.num_anchors = 12  # 4 sizes x 3 aspect ratios
model.roi_heads.box_refinement = True
model.roi_heads.refinement_nms_thresh = 0.3
model.roi_heads.box_vote_thresh = 0.8
model.roi_heads.global_context = True
model.roi_heads.box_predictor.input_shape.channels = 2 * 2048
train.init_checkpoint = "output/faster_rcnn_R_101_C4_coco2014_refine_context/model_final.pth"
train.output_dir = "output/faster_rcnn_R_101_C4_voc0712_plus3"
