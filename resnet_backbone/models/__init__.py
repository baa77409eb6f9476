"""The paper's networks (torch only): layers, blocks and stages, ResNet / plain / VGG-16
backbones and classifiers, the model registry, and their size and FLOPs against the paper."""
from .blocks import BasicBlock, BottleneckBlock, CifarStem, ImageNetStem, make_stage
from .layers import ConvNorm, FrozenBatchNorm2d, NaiveSyncBatchNorm, ZeroPadShortcut, get_norm
from .registry import ModelSpec, create_model, list_models, model_spec, register_model
from .resnet import ResNet, ResNetClassifier, build_resnet, build_stage, imagenet_stage_plans
from .vgg import VGG16, VGG16Classifier

__all__ = [
    "BasicBlock", "BottleneckBlock", "CifarStem", "ImageNetStem", "make_stage",
    "ConvNorm", "FrozenBatchNorm2d", "NaiveSyncBatchNorm", "ZeroPadShortcut", "get_norm",
    "ModelSpec", "create_model", "list_models", "model_spec", "register_model",
    "ResNet", "ResNetClassifier", "build_resnet", "build_stage", "imagenet_stage_plans",
    "VGG16", "VGG16Classifier",
]
