#!/usr/bin/env python
"""Parameters and FLOPs of the paper's networks; Table 1's FLOPs and Table 6's parameters.

A thin wrapper of ``resnet_backbone.cli.analyze_model`` (also the ``resnet-analyze-model`` command).
"""
import sys

from resnet_backbone.cli.analyze_model import main

if __name__ == "__main__":
    sys.exit(main())
