"""Moved to ``resnet_backbone.benchmarks.harness`` (``Bench``, timing rows, machine, report);
the classifier, memory and scaling rows to ``resnet_backbone.benchmarks.classifier``. This alias
keeps the old path importing: it is the moved module itself (``sys.modules``), so its names and
monkeypatching reach the real module."""
# moved-module alias
import sys
from resnet_backbone.benchmarks import harness as _moved
sys.modules[__name__] = _moved
