# Table 9 (appendix of arXiv 1512.03385), row "+multi-scale testing", COCO val, ResNet-101:
# paper mAP@.5 53.8, mAP@[.5,.95] 32.5 (box refinement, global context, multi-scale testing).
# LazyConfig of faster_rcnn_R_101_C4_coco2014_refine_context_multiscale.yaml, the same values
# (tested). Multi-scale testing acts at inference only: evaluate the model trained with
# ..._refine_context.py, e.g.
#   resnet-train-det --config-file <this> --eval-only \
#     train.init_checkpoint=output/faster_rcnn_R_101_C4_coco2014_refine_context/model_final.pth
# Proposals from the RPN at the single scale (shorter side 600); the Fast R-CNN step on the
# pyramid of shorter sides 200..1000, each RoI at its two adjacent scales (the one whose box is
# closest to 224 x 224 pixels, and the next larger), res5 on each, merged by maxout
# (maxout_after_res5=False: maxout of the RoI-pooled maps, res5 once; cheaper, not the paper's).
# pyramid_max_size: a level's longer side at most 4000 pixels (Detectron's; 0: no cap).
from detectron2.config import LazyCall as L

from resnet_backbone.detection import PaperRCNN

from .faster_rcnn_R_101_C4_coco2014_refine_context import (dataloader, lr_multiplier, model,
                                                           optimizer, train)

model = L(PaperRCNN)(**{k: v for k, v in model.items() if k != "_target_"},
                     test_scales=[200, 400, 600, 800, 1000], scale_selection_size=224,
                     maxout_after_res5=True, pyramid_max_size=4000)
train.output_dir = "output/faster_rcnn_R_101_C4_coco2014_refine_context_multiscale"
