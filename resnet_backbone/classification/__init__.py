"""Training and evaluation of the paper's ImageNet and CIFAR-10 classifiers (``tools/train_cls.py``,
``resnet-train-cls``): config, datasets, augmentation, lr schedule, trainer, evaluation, Fig. 7
analysis, plots, the backbone export, and ``Predictor`` (``resnet-predict-cls``). Needs torch,
torchvision, fvcore, tensorboard and tqdm (the ``[classification]`` extra), not detectron2."""
from .config import check_cls_cfg, get_cls_cfg

__all__ = ["get_cls_cfg", "check_cls_cfg", "Predictor"]


def __getattr__(name):
    # ``Predictor`` imports the trainer's modules: only when asked for (PEP 562)
    if name == "Predictor":
        from .predictor import Predictor
        return Predictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
