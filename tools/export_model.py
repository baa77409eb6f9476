#!/usr/bin/env python
"""Export a classifier or a detector to ONNX / TorchScript / torch.export, checked against eager.

A thin wrapper of ``resnet_backbone.cli.export_model`` (also the ``resnet-export-model`` command).
"""
import sys

from resnet_backbone.cli.export_model import main

if __name__ == "__main__":
    sys.exit(main())
