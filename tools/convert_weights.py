#!/usr/bin/env python
"""Convert ResNet / VGG-16 weights between ours and torchvision, MSRA caffe2, detectron2.

A thin wrapper of ``resnet_backbone.cli.convert_weights`` (also the ``resnet-convert-weights`` command).
"""
import sys

from resnet_backbone.cli.convert_weights import main

if __name__ == "__main__":
    sys.exit(main())
