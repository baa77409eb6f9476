# Faster R-CNN VGG-16 (Base-PaperRCNN-VGG16.yaml): the same recipe as faster_rcnn_c4.py with
# VGG-16 conv1_1..conv5_3 (stride 16, 512 channels) shared, 7x7 RoI pooling and fc6/fc7 (4096-d,
# ReLU, dropout) per region.
# Weights: torchvision's ImageNet VGG-16 (RGB, ImageNet mean/std); its classifier.0/classifier.3
# load into fc6/fc7. For the Caffe VGG-16: input_format BGR, pixel_mean [102.98, 115.95, 122.77],
# pixel_std [1, 1, 1].
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.roi_heads import StandardROIHeads

from resnet_backbone.detection import VGG16Backbone, VGG16BoxHead

from .faster_rcnn import box_predictor, pooler, roi_sampling, rpn

rpn.in_features = ["conv5_3"]
rpn.head.in_channels = 512
pooler.output_size = 7
box_predictor.input_shape = L(ShapeSpec)(channels=4096)  # fc7

model = L(GeneralizedRCNN)(
    backbone=L(VGG16Backbone)(
        out_features=["conv5_3"],
        freeze_at=2,  # fine-tune conv3_1 and up
        ceil_mode=True,  # Caffe's pooling rounds up
    ),
    proposal_generator=rpn,
    roi_heads=L(StandardROIHeads)(
        **roi_sampling,
        box_in_features=["conv5_3"],
        box_pooler=pooler,
        box_head=L(VGG16BoxHead)(input_shape=L(ShapeSpec)(channels=512, height=7, width=7),
                                 fc_dim=4096, dropout=0.5),
        box_predictor=box_predictor,
        train_on_pred_boxes=False,
    ),
    pixel_mean=[123.675, 116.28, 103.53],
    pixel_std=[58.395, 57.12, 57.375],
    input_format="RGB",
    vis_period=0,
)
