"""The networks of "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016) as
PyTorch classifiers and Detectron2 backbones.

This is the core: networks, registry, weight conversion, safe checkpoints, analysis and fast
paths, with torch, torchvision and fvcore only. ``resnet_backbone.classification`` trains the
classifiers; ``import resnet_backbone.detection`` (needs detectron2) registers the Detectron2
backbones and heads.

>>> import resnet_backbone
>>> model = resnet_backbone.create_model("resnet50")      # Table 1, stride in the 1x1 conv
>>> resnet_backbone.list_models()[:3]
['resnet18', 'resnet34', 'resnet50']
"""
__version__ = "0.6.0"

# Importing the package changes no process-wide state: third-party import-time warnings are
# silenced where this package imports those modules (``third_party.quiet_third_party_imports``).
from .models import (VGG16, BasicBlock, BottleneckBlock, CifarStem, ImageNetStem,
                     ModelSpec, ResNet, ResNetClassifier, VGG16Classifier, build_resnet,
                     create_model, list_models, make_stage, model_spec, register_model)
from .weights_registry import list_weights

__all__ = [
    "BasicBlock", "BottleneckBlock", "CifarStem", "ImageNetStem", "make_stage",
    "create_model", "list_models", "model_spec", "register_model", "ModelSpec",
    "ResNet", "ResNetClassifier", "build_resnet", "VGG16", "VGG16Classifier", "list_weights",
]
