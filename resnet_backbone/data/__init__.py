"""Datasets: synthetic stand-ins in the real formats (COCO json, VOC xml) and loaders."""
