#!/usr/bin/env python
"""Train one classification recipe with N seeds, in sequence or as printed commands (Table 6).

A thin wrapper of ``resnet_backbone.cli.run_seeds`` (also the ``resnet-run-seeds`` command).
"""
import sys

from resnet_backbone.cli.run_seeds import main

if __name__ == "__main__":
    sys.exit(main())
