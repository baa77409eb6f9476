"""The benchmarks (application layer, like ``resnet_backbone.cli``: they may import the core,
``classification`` and ``detection``); ``resnet_backbone.cli.benchmark`` (``tools/benchmark.py``,
``resnet-benchmark``) runs them.

* ``harness``: the shared settings and timer (``Bench``), result rows with ratios, the machine's
  description, the report (save, print, render);
* ``classifier``: the classifier, memory and scaling rows (ours vs torchvision);
* ``serving``: the classifier part of the serve row (eager, fast, ONNX Runtime fp32 and INT8);
* ``detection``: the backbone, detector and C4 memory rows and the detector part of the serve
  row (ours vs detectron2's builtin models; needs detectron2);
* ``augmentation``: the ImageNet training augmentation on one CPU core;
* ``loader``: the classification trainer's image-folder and tar-shard readers on one CPU core.
"""
