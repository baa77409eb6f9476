"""torch.hub entry points: every network of the registry by its name, built as
``resnet_backbone.create_model`` builds it (same keyword arguments, ``features_only`` and
``out_indices`` included).

    model = torch.hub.load("/path/to/this/checkout", "resnet50", source="local")
    model = torch.hub.load("/path/to/this/checkout", "cifar_resnet110", source="local")
    features = torch.hub.load("/path/to/this/checkout", "resnet50", source="local",
                              features_only=True, out_indices=(2, 3, 4))

    model = torch.hub.load("/path/to/this/checkout", "resnet50", source="local",
                           weights="resnet50.torchvision")

The networks start untrained unless ``weights`` names an entry of
``resnet_backbone.weights_registry`` (a file you put in the weights folder, its sha256 checked:
nothing is downloaded) or a path. Other weights you have (MSRA caffe2, detectron2, ours) load
with ``resnet_backbone.convert`` and the checkpoint tools (README, "Weights").
"""
from resnet_backbone.models.registry import create_model as _create_model
from resnet_backbone.models.registry import list_models as _list_models
from resnet_backbone.models.registry import model_spec as _model_spec

dependencies = ["torch", "torchvision", "fvcore"]


def _entry(name):
    def entry(**kwargs):
        return _create_model(name, **kwargs)

    spec = _model_spec(name)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{name}: {spec.depth}-layer {'CIFAR-10' if spec.cifar else 'ImageNet'} "
                     f"{'residual' if spec.residual else 'plain'} network of He et al. (2016); "
                     "keyword arguments as resnet_backbone.create_model (weights=: a registry "
                     "name or a path; untrained without).")
    return entry


for _name in _list_models():
    globals()[_name] = _entry(_name)
