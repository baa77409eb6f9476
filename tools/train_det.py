#!/usr/bin/env python
"""Train or evaluate the paper's Faster R-CNN detectors (appendix A) with detectron2.

A thin wrapper of ``resnet_backbone.cli.train_det`` (also the ``resnet-train-det`` command).
"""
import sys

from resnet_backbone.cli.train_det import main

if __name__ == "__main__":
    sys.exit(main())
