#!/usr/bin/env python
"""Fig. 7: std of every 3x3 layer's response of trained classifiers.

A thin wrapper of ``resnet_backbone.cli.plot_responses`` (also the ``resnet-plot-responses`` command).
"""
import sys

from resnet_backbone.cli.plot_responses import main

if __name__ == "__main__":
    sys.exit(main())
