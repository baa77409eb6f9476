"""Moved to ``resnet_backbone.benchmarks.detection`` (the detectron2 rows). This alias keeps
the old path importing: it is the moved module itself (``sys.modules``), so its names and
monkeypatching reach the real module."""
# moved-module alias
import sys
from resnet_backbone.benchmarks import detection as _moved
sys.modules[__name__] = _moved
