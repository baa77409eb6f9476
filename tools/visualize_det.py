#!/usr/bin/env python
"""Draw a trained detector's boxes beside the ground truth on a few images of a dataset.

A thin wrapper of ``resnet_backbone.cli.visualize_det`` (also the ``resnet-visualize-det`` command).
"""
import sys

from resnet_backbone.cli.visualize_det import main

if __name__ == "__main__":
    sys.exit(main())
