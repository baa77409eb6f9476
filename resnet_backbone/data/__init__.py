"""Datasets in their real formats (CIFAR-10 python batches, ImageNet folders: ``datasets``) and
the synthetic stand-ins written in those formats and in COCO json / VOC xml (``synthetic``)."""
