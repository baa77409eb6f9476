"""Moved to ``resnet_backbone.classification.backbone_export`` (the weight export: classifier
-> backbone checkpoint, the classifier rebuilt from a checkpoint; ``backbone_meta`` itself lives
in ``resnet_backbone.checkpoint_meta``). This alias keeps the old path importing: it is the moved
module itself (``sys.modules``), so its names and monkeypatching reach the real module."""
# moved-module alias
import sys
from resnet_backbone.classification import backbone_export as _moved
sys.modules[__name__] = _moved
