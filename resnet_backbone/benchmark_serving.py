"""Moved to ``resnet_backbone.benchmarks.serving`` (the serve row). This alias keeps the old
path importing: it is the moved module itself (``sys.modules``), so its names and monkeypatching
reach the real module."""
# moved-module alias
import sys
from resnet_backbone.benchmarks import serving as _moved
sys.modules[__name__] = _moved
