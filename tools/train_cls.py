#!/usr/bin/env python
"""Train / evaluate the paper's ImageNet and CIFAR-10 classifiers (Sec. 3.4, Sec. 4.2).

A thin wrapper of ``resnet_backbone.cli.train_cls`` (also the ``resnet-train-cls`` command).
"""
import sys

from resnet_backbone.cli.train_cls import main

if __name__ == "__main__":
    sys.exit(main())
