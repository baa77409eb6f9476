"""timm's ``features_only`` interface (resnet_backbone.models.features), used as timm's users use
it: ``create_model(name, features_only=True, out_indices=...)`` returns the maps as a list and
``feature_info.channels()`` / ``reduction()`` describe them; and ``torch.compile(fullgraph=True)``
captures the classifiers, the backbone and the feature lists without a graph break."""
import pytest
import torch

from resnet_backbone import create_model
from resnet_backbone.models import ResNet


@pytest.mark.parametrize("name, size, channels, reductions", [
    ("resnet50", 64, [64, 256, 512, 1024, 2048], [4, 4, 8, 16, 32]),
    ("plain18", 64, [64, 64, 128, 256, 512], [4, 4, 8, 16, 32]),
    ("cifar_resnet20", 32, [16, 16, 32, 64], [1, 1, 2, 4]),
    ("vgg16", 64, [64, 128, 256, 512, 512], [1, 2, 4, 8, 16]),
])
def test_feature_list_matches_its_feature_info(name, size, channels, reductions):
    torch.manual_seed(0)
    model = create_model(name, features_only=True).eval()
    info = model.feature_info
    assert info.channels() == channels and info.reduction() == reductions
    assert info.out_indices == tuple(range(len(channels)))
    with torch.no_grad():
        maps = model(torch.randn(2, 3, size, size))
    assert [m.shape[1] for m in maps] == channels
    assert [size // m.shape[-1] for m in maps] == reductions
    assert not any(k.startswith(("body.linear", "body.fc8", "body.head")) for k in model.state_dict())


def test_out_indices_select_the_maps_and_bad_ones_are_named():
    torch.manual_seed(0)
    full = create_model("resnet18", features_only=True).eval()
    some = create_model("resnet18", features_only=True, out_indices=(2, 4)).eval()
    some.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        everything, two = full(x), some(x)
    assert some.feature_info.module_name() == ["res3", "res5"] and some.feature_info.channels() == [128, 512]
    assert torch.equal(two[0], everything[2]) and torch.equal(two[1], everything[4])
    with pytest.raises(ValueError, match=r"out_indices \[5\]: give distinct indices in 0..4 \(stem, res2"):
        create_model("resnet18", features_only=True, out_indices=[5])
    with pytest.raises(ValueError, match="out_indices applies with features_only=True"):
        create_model("resnet18", out_indices=[1])


@pytest.mark.parametrize("build, size", [
    (lambda: create_model("resnet50"), 64),
    (lambda: create_model("cifar_resnet20"), 32),
    (lambda: create_model("vgg16"), 64),
    (lambda: ResNet(50, out_features=["res2", "res3", "res4", "res5"]), 64),
    (lambda: create_model("resnet18", features_only=True), 64),
], ids=["resnet50", "cifar_resnet20", "vgg16", "backbone", "features_only"])
def test_torch_compile_captures_a_full_graph(build, size):
    """fullgraph=True raises at the first graph break; the "eager" backend runs the captured
    graph without compiling it (inductor takes minutes on 2 cores: tests/test_fast.py)."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = build().eval()
    x = torch.randn(2, 3, size, size)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        got, want = compiled(x), model(x)
    flat = lambda o: list(o.values()) if isinstance(o, dict) else (o if isinstance(o, list) else [o])  # noqa: E731
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(flat(got), flat(want)))
