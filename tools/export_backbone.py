#!/usr/bin/env python
"""A trained classifier of tools/train_cls.py -> a backbone checkpoint for tools/train_det.py.

A thin wrapper of ``resnet_backbone.cli.export_backbone`` (also the ``resnet-export-backbone`` command).
"""
import sys

from resnet_backbone.cli.export_backbone import main

if __name__ == "__main__":
    sys.exit(main())
