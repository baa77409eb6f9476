# The Faster R-CNN pieces both backbones share (Base-PaperRCNN-C4.yaml, which
# Base-PaperRCNN-VGG16.yaml inherits): the RPN (anchors, sampling, NMS, top-k), the RoI
# sampling and the box predictor. faster_rcnn_c4.py and faster_rcnn_vgg16.py put them together
# with a backbone and a box head; every value is the YAML's (or detectron2's default where the
# YAML sets none), and tests/detection/test_lazy.py checks the built modules against it.
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNOutputLayers

rpn = L(RPN)(
    in_features=["res4"],  # the backbone's stride-16 map (VGG-16: conv5_3)
    # num_anchors = len(sizes[0]) * len(aspect_ratios[0]); in_channels: the backbone map's
    head=L(StandardRPNHead)(in_channels=1024, num_anchors=9, box_dim=4, conv_dims=[-1]),
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[128, 256, 512]],  # 3 scales x 3 aspect ratios (VOC); COCO rows add 64
        aspect_ratios=[[0.5, 1.0, 2.0]],
        strides=[16],
        offset=0.0,
    ),
    # negative < 0.3, positive >= 0.7 (and each box's best anchor)
    anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1],
                              allow_low_quality_matches=True),
    box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
    batch_size_per_image=256,  # anchors per image, half positive at most
    positive_fraction=0.5,
    pre_nms_topk=[12000, 6000],  # (training, test)
    post_nms_topk=[2000, 300],  # 300 proposals at test time
    nms_thresh=0.7,
    min_box_size=0,
    anchor_boundary_thresh=0,  # border-crossing anchors are ignored in training
    loss_weight={"loss_rpn_cls": 1.0, "loss_rpn_loc": 1.0},
    box_reg_loss_type="smooth_l1",
    smooth_l1_beta=0.1111,  # sigma 3 in py-faster-rcnn
)

# RoIs sampled per image (py-faster-rcnn TRAIN.BATCH_SIZE), a quarter foreground at most;
# background in [0.1, 0.5), foreground >= 0.5
roi_sampling = dict(
    num_classes=20,
    batch_size_per_image=128,
    positive_fraction=0.25,
    proposal_matcher=L(Matcher)(thresholds=[0.1, 0.5], labels=[-1, 0, 1],
                                allow_low_quality_matches=False),
    proposal_append_gt=True,
)

# RoI (max) pooling as the paper, one stride-16 map; output_size per backbone
pooler = L(ROIPooler)(output_size=14, scales=[1.0 / 16], sampling_ratio=0, pooler_type="ROIPool")

box_predictor = L(FastRCNNOutputLayers)(
    input_shape=L(ShapeSpec)(channels=2048, height=1, width=1),  # the box head's output
    box2box_transform=L(Box2BoxTransform)(weights=[10.0, 10.0, 5.0, 5.0]),
    num_classes="${..num_classes}",
    test_score_thresh=0.05,
    test_nms_thresh=0.3,  # per-class NMS
    test_topk_per_image=100,  # detections per image
    cls_agnostic_bbox_reg=False,
    smooth_l1_beta=1.0,
    box_reg_loss_type="smooth_l1",
    loss_weight={"loss_box_reg": 1.0},
)
