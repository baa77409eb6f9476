#!/usr/bin/env python
"""Training and validation error curves of runs of tools/train_cls.py (Fig. 4, Fig. 6).

A thin wrapper of ``resnet_backbone.cli.plot_curves`` (also the ``resnet-plot-curves`` command).
"""
import sys

from resnet_backbone.cli.plot_curves import main

if __name__ == "__main__":
    sys.exit(main())
