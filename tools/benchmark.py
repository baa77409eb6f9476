#!/usr/bin/env python
"""Speed and memory of this package's networks next to their peers, in one process.

A thin wrapper of ``resnet_backbone.cli.benchmark`` (also the ``resnet-benchmark`` command).
"""
import sys

from resnet_backbone.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
