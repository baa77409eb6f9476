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
__version__ = "0.2.0"

import warnings

# fvcore (FLOP counting) and detectron2 decorate functions with torch.jit.script at import time;
# PyTorch >= 2.9 warns about it once per process, on every command of this package. The warning
# concerns their code, not the user's, so it is silenced for that exact message only.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                        category=FutureWarning)

from .models import (VGG16, BasicBlock, BottleneckBlock, CifarStem, ImageNetStem,  # noqa: E402
                     ModelSpec, ResNet, ResNetClassifier, VGG16Classifier, build_resnet,
                     create_model, list_models, make_stage, model_spec, register_model)

__all__ = [
    "BasicBlock", "BottleneckBlock", "CifarStem", "ImageNetStem", "make_stage",
    "create_model", "list_models", "model_spec", "register_model", "ModelSpec",
    "ResNet", "ResNetClassifier", "build_resnet", "VGG16", "VGG16Classifier",
]
