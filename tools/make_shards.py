#!/usr/bin/env python
"""Write an ImageNet folder, or a COCO-format split, into tar shards in webdataset's layout.

A thin wrapper of ``resnet_backbone.cli.make_shards`` (also the ``resnet-make-shards`` command).
"""
import sys

from resnet_backbone.cli.make_shards import main

if __name__ == "__main__":
    sys.exit(main())
