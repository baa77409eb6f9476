# Table 9 (appendix of arXiv 1512.03385), row "+box refinement", COCO val, ResNet-101:
# paper mAP@.5 49.9, mAP@[.5,.95] 29.9 (baseline row 48.4 / 27.2).
# LazyConfig of faster_rcnn_R_101_C4_coco2014_refine.yaml, the same values (tested): the
# baseline row with box refinement, which acts at inference only. Evaluate a trained baseline:
#   resnet-train-det --config-file <this> --eval-only train.init_checkpoint=<baseline>/model_final.pth
# Refinement: a second pass from each region's regressed box; NMS at IoU 0.3 on the union of both
# passes' 300 predictions, then box voting (IoU 0.8: not given in the paper, Detectron's value).
from .faster_rcnn_R_101_C4_coco2014 import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.box_refinement = True
model.roi_heads.refinement_nms_thresh = 0.3
model.roi_heads.box_vote_thresh = 0.8  # None: no voting
train.output_dir = "output/faster_rcnn_R_101_C4_coco2014_refine"
