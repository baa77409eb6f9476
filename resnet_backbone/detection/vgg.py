"""The Faster R-CNN VGG-16 box head: fc6 and fc7 (4096-d, ReLU, dropout) on a 7x7 RoI-pooled
conv5_3 map, registered in ``ROI_BOX_HEAD_REGISTRY`` for detectron2's ``StandardROIHeads``.

It is ``resnet_backbone.models.vgg.VGGFullyConnected``, the trunk of ``VGG16Classifier``, so its
``fc6``/``fc7`` take an ImageNet VGG-16 classifier's weights (``PaperDetectionCheckpointer``
maps ours, ``head.fc6``, and torchvision's, ``classifier.0``/``classifier.3``).

detectron2-``configurable``: ``VGG16BoxHead(cfg, input_shape)`` reads ``MODEL.VGG16`` (the
registry's call), ``VGG16BoxHead(input_shape=ShapeSpec(channels=512, height=7, width=7),
fc_dim=4096, dropout=0.5)`` takes keywords (LazyConfig: ``box_head=L(VGG16BoxHead)(...)``).
"""
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_BOX_HEAD_REGISTRY

from ..models.vgg import VGGFullyConnected


def _check_dropout(dropout: float, name: str) -> None:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {dropout}")


@ROI_BOX_HEAD_REGISTRY.register()
class VGG16BoxHead(VGGFullyConnected):
    """fc6/fc7 of VGG-16 as a box head; width ``fc_dim`` (``MODEL.VGG16.FC_DIM``), ``dropout``
    (``MODEL.VGG16.DROPOUT``) after each in training."""

    @configurable
    def __init__(self, *, input_shape: ShapeSpec, fc_dim: int = 4096, dropout: float = 0.5):
        size = (input_shape.channels, input_shape.height, input_shape.width)
        if None in size:
            raise ValueError(f"VGG16BoxHead needs the pooled RoI shape (channels, height, width); "
                             f"got {size}")
        _check_dropout(dropout, "VGG16BoxHead dropout")
        super().__init__(size[0] * size[1] * size[2], fc_dim, dropout)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        if "VGG16" not in cfg.MODEL:
            raise ValueError("The config has no MODEL.VGG16 node: call "
                             "resnet_backbone.detection.add_paper_resnet_config(cfg) before "
                             "merging the YAML.")
        _check_dropout(cfg.MODEL.VGG16.DROPOUT, "MODEL.VGG16.DROPOUT")
        return {"input_shape": input_shape, "fc_dim": cfg.MODEL.VGG16.FC_DIM,
                "dropout": cfg.MODEL.VGG16.DROPOUT}

    @property
    def output_shape(self) -> ShapeSpec:
        return ShapeSpec(channels=self.fc7.out_features)
