"""The Detectron2 plugin: the paper's ResNet and VGG-16 as backbones and detection heads.

The only layer of the package that imports detectron2. Importing it registers
``build_paper_resnet``, ``build_paper_resnet_fpn_backbone`` and ``build_vgg16_backbone``
(``BACKBONE_REGISTRY``), ``PaperRes5ROIHeads`` (``ROI_HEADS_REGISTRY``), ``VGG16BoxHead``
(``ROI_BOX_HEAD_REGISTRY``), ``PaperRCNN`` (``META_ARCH_REGISTRY``: multi-scale testing), and the ``voc_2012_test`` images (result files for the VOC server),
the way ``import tridentnet`` does in detectron2's projects. Configs need
``add_paper_resnet_config(cfg)`` first; ``configs/detection/`` holds the paper's Faster R-CNN
recipes.
"""
from ..third_party import quiet_third_party_imports

# detectron2's modules warn about their own torch.jit.script use when first imported.
with quiet_third_party_imports():
    from .backbone import (PaperResNet, VGG16Backbone, build_paper_resnet,
                           build_paper_resnet_fpn_backbone, build_vgg16_backbone)
    from .checkpoint import PaperDetectionCheckpointer
    from .config import add_paper_resnet_config, get_detection_cfg
    from .meta_arch import PaperRCNN
    from .predictor import Predictor
    from .roi_heads import PaperRes5ROIHeads
    from .vgg import VGG16BoxHead
    from .voc_submission import VOCSubmissionWriter, register_voc_test_images

__all__ = [
    "add_paper_resnet_config", "get_detection_cfg", "build_paper_resnet",
    "build_paper_resnet_fpn_backbone", "build_vgg16_backbone", "PaperResNet", "VGG16Backbone",
    "PaperRes5ROIHeads", "PaperRCNN", "VGG16BoxHead", "PaperDetectionCheckpointer", "VOCSubmissionWriter",
    "register_voc_test_images", "Predictor",
]
