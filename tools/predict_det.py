#!/usr/bin/env python
"""Detect objects in your own images with a trained (or exported) detector.

A thin wrapper of ``resnet_backbone.cli.predict_det`` (also the ``resnet-predict-det`` command).
"""
import sys

from resnet_backbone.cli.predict_det import main

if __name__ == "__main__":
    sys.exit(main())
