"""Moved to ``resnet_backbone.benchmarks``: ``harness`` (``Bench``, timing rows, machine,
report) and ``classifier`` (the classifier, memory and scaling rows). This alias keeps the old
path importing with every name it had (a re-export of both modules; monkeypatch the moved
modules themselves)."""
# moved-module alias
from resnet_backbone.benchmarks.harness import *  # noqa: F401,F403
from resnet_backbone.benchmarks.classifier import *  # noqa: F401,F403
