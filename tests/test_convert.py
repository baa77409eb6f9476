"""Weight conversion: torchvision ResNet / VGG-16 and MSRA caffe2 weights give the same network
in our names, round trips are exact, bad input is refused. (detectron2's side of it:
tests/detection/test_detectron2_compat.py; the command line: tests/cli/test_convert_weights.py.)"""
import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from resnet_backbone import create_model
from resnet_backbone import convert
from resnet_backbone.checkpoint import CheckpointError, load_checkpoint_file, state_dict_from_checkpoint

from helpers import assert_float_close, assert_same_state, randomize_norms_


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_resnet_gives_torchvision_outputs(depth):
    torch.manual_seed(depth)
    tv = randomize_norms_(getattr(torchvision.models, f"resnet{depth}")()).eval()
    tv_sd = tv.state_dict()
    assert convert.detect_format(tv_sd) == "torchvision_resnet"
    ours = create_model(f"resnet{depth}", stride_in_1x1=False).eval()
    ours.load_state_dict(convert.torchvision_resnet_to_paper(tv_sd), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_float_close(ours(x), tv(x))
    assert_same_state(convert.paper_to_torchvision_resnet(ours.state_dict()), tv_sd)
    assert convert.to_paper(tv_sd)[1] == "torchvision_resnet"


def test_torchvision_vgg16_gives_torchvision_outputs():
    torch.manual_seed(0)
    tv = torchvision.models.vgg16().eval()
    tv_sd = tv.state_dict()
    assert convert.detect_format(tv_sd) == "torchvision_vgg16"
    ours = create_model("vgg16").eval()
    ours.load_state_dict(convert.torchvision_vgg16_to_paper(tv_sd), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), tv(x), atol=1e-6)
    back = convert.paper_to_torchvision_vgg16(ours.state_dict())
    assert_same_state(back, tv_sd)
    assert convert.detect_format(ours.state_dict()) == "paper_vgg16"
    with pytest.raises(ValueError, match="features.31"):
        convert.torchvision_vgg16_to_paper({**tv_sd, "features.31.weight": torch.zeros(1)})


def msra_style_blobs(model: nn.Module) -> dict:
    """MSRA ``R-50.pkl`` blobs written by hand from Detectron's naming (not by our converter):
    affine-only BN, float32 numpy arrays, optimizer ``_momentum`` blobs beside the weights."""
    rng = np.random.default_rng(0)
    sd = model.state_dict()

    def put(name, like):
        shape = tuple(sd[like].shape)
        blobs[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
        blobs[name + "_momentum"] = np.zeros(shape, np.float32)

    blobs = {}
    put("conv1_w", "stem.conv1.weight")
    put("res_conv1_bn_s", "stem.conv1.norm.weight")
    put("res_conv1_bn_b", "stem.conv1.norm.bias")
    for stage, count in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        for i in range(count):
            branches = [("branch2a", "conv1"), ("branch2b", "conv2"), ("branch2c", "conv3")]
            if i == 0:
                branches.append(("branch1", "shortcut"))
            for c2, ours in branches:
                put(f"res{stage}_{i}_{c2}_w", f"res{stage}.{i}.{ours}.weight")
                put(f"res{stage}_{i}_{c2}_bn_s", f"res{stage}.{i}.{ours}.norm.weight")
                put(f"res{stage}_{i}_{c2}_bn_b", f"res{stage}.{i}.{ours}.norm.bias")
    put("fc1000_w", "linear.weight")
    put("fc1000_b", "linear.bias")
    return blobs


def test_msra_caffe2_blobs_load_as_exact_affine_bn(tmp_path):
    model = create_model("resnet50", norm="FrozenBN").eval()
    blobs = msra_style_blobs(model)
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(blobs, f, protocol=2)  # how the MSRA files are stored: a flat blob dict
    loaded, container = state_dict_from_checkpoint(load_checkpoint_file(path), path)
    assert container == "" and not any(k.endswith("_momentum") for k in loaded)
    assert convert.detect_format(loaded) == "caffe2_resnet"
    paper, found = convert.to_paper(loaded)
    assert found == "caffe2_resnet"
    model.load_state_dict(paper, strict=True)
    assert torch.equal(model.res3[0].conv1.weight, torch.from_numpy(blobs["res3_0_branch2a_w"]))
    assert torch.equal(model.linear.bias, torch.from_numpy(blobs["fc1000_b"]))
    # FrozenBN with the converted statistics is exactly caffe2's AffineChannel x * s + b.
    norm, x = model.res4[2].conv2.norm, torch.randn(2, 256, 3, 3)
    s, b = (torch.from_numpy(blobs[f"res4_2_branch2b_bn_{k}"]).view(1, -1, 1, 1) for k in "sb")
    assert torch.allclose(norm(x), x * s + b, atol=1e-6, rtol=0)
    bn_model = create_model("resnet50").eval()
    bn_model.load_state_dict(paper, strict=True)  # BN (eval) computes the same function
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(bn_model(images), model(images), atol=1e-5)
    back = convert.paper_to_caffe2_resnet(paper)
    weights = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    assert set(back) == set(weights)
    assert all(np.allclose(back[k], weights[k], atol=1e-6) for k in weights)


def test_caffe2_round_trip_folds_bn_and_keeps_the_function():
    torch.manual_seed(0)
    ours = randomize_norms_(create_model("resnet18")).eval()
    blobs = convert.paper_to_caffe2_resnet(ours.state_dict())
    assert {"conv1_w", "res_conv1_bn_s", "res3_0_branch1_w", "res5_1_branch2b_bn_b",
            "fc1000_w"} <= set(blobs)
    assert not any(k.endswith(("_rm", "_riv")) for k in blobs)
    again = create_model("resnet18").eval()
    again.load_state_dict(convert.caffe2_resnet_to_paper(blobs), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = ours(x)
        assert (again(x) - expected).abs().max() <= 1e-5 * expected.abs().max()
    unfolded = convert.paper_to_caffe2_resnet(ours.state_dict(), fold_bn=False)
    assert "res2_0_branch2a_bn_riv" in unfolded
    restored = convert.caffe2_resnet_to_paper(unfolded)
    expected = {k: v for k, v in ours.state_dict().items() if "num_batches" not in k}
    assert_same_state(restored, expected)


def test_unknown_keys_and_formats_are_errors():
    sd = create_model("resnet18").state_dict()
    with pytest.raises(ValueError, match="res2.0.conv9.weight"):
        convert.to_paper({**sd, "res2.0.conv9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="layer1.0.bn7.weight"):
        convert.torchvision_resnet_to_paper({"conv1.weight": torch.zeros(1),
                                             "layer1.0.bn7.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="res9_0_branch2a_w"):
        convert.caffe2_resnet_to_paper({"conv1_w": np.zeros(1), "res9_0_branch2a_w": np.zeros(1)})
    with pytest.raises(ValueError, match="torchvision_resnet"):
        convert.detect_format({"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="detectron2_resnet_to_paper"):
        convert.detect_format({"backbone.res2.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="Unknown source format"):
        convert.to_paper(sd, "onnx")
    with pytest.raises(CheckpointError, match="non-array"):
        state_dict_from_checkpoint({"model": {"a.weight": torch.zeros(1), "epoch": 3}})
