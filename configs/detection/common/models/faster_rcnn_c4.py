# Faster R-CNN, ResNet "C4" design (Base-PaperRCNN-C4.yaml): conv1..conv4_x (stride 16) shared by
# RPN and detector; RoI pooling (14x14) before conv5_1; conv5_x + global average pooling per
# region; two sibling layers classify and regress. The backbone and res5 are this package's
# (PaperResNet, paper_res5): keep their depth/shortcut/residual/stride_in_1x1/norm equal.
# ResNet-18/34 (basic blocks): proposal_generator.head.in_channels 256 and
# roi_heads.box_predictor.input_shape.channels 512 (1024 and 2048 for ResNet-50/101/152).
from detectron2.config import LazyCall as L
from detectron2.modeling.meta_arch import GeneralizedRCNN

from resnet_backbone.detection import PaperResNet, PaperRes5ROIHeads
from resnet_backbone.detection.roi_heads import paper_res5

from .faster_rcnn import box_predictor, pooler, roi_sampling, rpn

model = L(GeneralizedRCNN)(
    backbone=L(PaperResNet)(
        depth=101,
        shortcut="B",
        residual=True,
        stride_in_1x1=True,  # MSRA weights
        norm="FrozenBN",  # ImageNet BN statistics, fixed while fine-tuning (appendix A)
        freeze_at=2,  # conv1 and conv2_x frozen
        out_features=["res4"],
        res5_dilation=1,
    ),
    proposal_generator=rpn,
    roi_heads=L(PaperRes5ROIHeads)(
        **roi_sampling,
        in_features=["res4"],
        pooler=pooler,  # 14x14, so the stride-2 conv5_1 gives 7x7 maps
        res5=L(paper_res5)(depth=101, shortcut="B", residual=True, stride_in_1x1=True,
                           norm="FrozenBN"),
        box_predictor=box_predictor,
    ),
    # MSRA caffe weights: BGR input, mean subtracted, std 1. For torchvision ResNet weights use
    # input_format RGB, pixel_mean [123.675, 116.28, 103.53], pixel_std [58.395, 57.12, 57.375]
    # and stride_in_1x1 False (backbone and res5).
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
    vis_period=0,
)
