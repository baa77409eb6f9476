"""hubconf.py serves every network of the registry through torch.hub, from a checkout
(``source="local"``), with create_model's keyword arguments."""
from pathlib import Path

import torch

from resnet_backbone import list_models
from resnet_backbone.models import ResNetClassifier

REPO = str(Path(__file__).resolve().parents[1])


def test_torch_hub_loads_the_paper_networks_from_a_checkout():
    assert set(_entries()) == set(list_models())  # torch.hub.list reads GitHub repositories only
    model = torch.hub.load(REPO, "resnet50", source="local", trust_repo=True)
    assert isinstance(model, ResNetClassifier) and model.num_classes == 1000
    cifar = torch.hub.load(REPO, "cifar_resnet110", source="local", trust_repo=True, shortcut="B")
    assert cifar.num_classes == 10 and sum(p.numel() for p in cifar.parameters()) > 1.7e6
    features = torch.hub.load(REPO, "resnet18", source="local", trust_repo=True,
                              features_only=True, out_indices=(4,))
    assert features.feature_info.channels() == [512]


def _entries():
    """The entry points, found as torch.hub finds them (public callables of hubconf.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf", Path(REPO) / "hubconf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
