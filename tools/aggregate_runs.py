#!/usr/bin/env python
"""Best, mean ± std of runs over seeds, beside the paper's figure (Table 6).

A thin wrapper of ``resnet_backbone.cli.aggregate_runs`` (also the ``resnet-aggregate-runs`` command).
"""
import sys

from resnet_backbone.cli.aggregate_runs import main

if __name__ == "__main__":
    sys.exit(main())
