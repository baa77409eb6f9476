"""The networks of "Deep Residual Learning for Image Recognition" (He et al., CVPR 2016) as
PyTorch classifiers and Detectron2 backbones.

>>> import resnet_backbone
>>> model = resnet_backbone.create_model("resnet50")      # Table 1, stride in the 1x1 conv
>>> resnet_backbone.list_models()[:3]
['resnet18', 'resnet34', 'resnet50']
"""
__version__ = "0.1.0"

import warnings

# detectron2 and fvcore decorate functions with torch.jit.script at import time; PyTorch >= 2.9
# warns about it once per process, on every command of this package. The warning concerns their
# code, not the user's, so it is silenced for that exact message only.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated",
                        category=FutureWarning)

from .blocks import BasicBlock, BottleneckBlock, CifarStem, ImageNetStem, make_stage
from .model_zoo import create_model, list_models, register_model
from .resnet import ResNet, ResNetClassifier, build_resnet
from .detection import add_paper_resnet_config  # also registers the Detectron2 backbones/heads
from .vgg import VGG16, VGG16Classifier

__all__ = [
    "BasicBlock", "BottleneckBlock", "CifarStem", "ImageNetStem", "make_stage",
    "create_model", "list_models", "register_model",
    "ResNet", "ResNetClassifier", "build_resnet", "VGG16", "VGG16Classifier",
    "add_paper_resnet_config",
]
