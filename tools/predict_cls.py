#!/usr/bin/env python
"""Classify your own images with a trained classifier (top-k classes of each image).

A thin wrapper of ``resnet_backbone.cli.predict_cls`` (also the ``resnet-predict-cls`` command).
"""
import sys

from resnet_backbone.cli.predict_cls import main

if __name__ == "__main__":
    sys.exit(main())
