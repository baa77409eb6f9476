# Table 9 (appendix of arXiv 1512.03385), row "+context", COCO val, ResNet-101:
# paper mAP@.5 51.1, mAP@[.5,.95] 30.0 (box refinement and global context).
# LazyConfig of faster_rcnn_R_101_C4_coco2014_refine_context.yaml, the same values (tested).
# Global context changes the model: the box predictor takes the region's and the whole image's
# res5 features, concatenated (2 x 2048 inputs), and is trained end to end from the ImageNet
# weights with the baseline's schedule. Box refinement as in ..._refine.py.
from .faster_rcnn_R_101_C4_coco2014_refine import (dataloader, lr_multiplier, model, optimizer,
                                                   train)

model.roi_heads.global_context = True
model.roi_heads.box_predictor.input_shape.channels = 2 * 2048
train.output_dir = "output/faster_rcnn_R_101_C4_coco2014_refine_context"
