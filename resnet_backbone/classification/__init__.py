"""Training and evaluation of the paper's ImageNet and CIFAR-10 classifiers
(``tools/train_cls.py``): config, datasets, augmentation, trainer, evaluation, Fig. 7 analysis."""
from .config import check_cls_cfg, get_cls_cfg

__all__ = ["get_cls_cfg", "check_cls_cfg"]
