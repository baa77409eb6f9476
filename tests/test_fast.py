"""Each fast path of ``resnet_backbone.fast`` gives the plain path's outputs within tolerance."""
import copy
import os

import pytest
import torch
from torch import nn

from resnet_backbone import build_resnet
from resnet_backbone.fast import (SubsampledConvNorm, autocast_context, compile_available,
                                  fold_frozen_bn, maybe_compile, optimize_for_inference,
                                  speed_up_strided_1x1, subsample_strided_1x1, subsampling_pays_off,
                                  supports_dtype, to_channels_last)
from resnet_backbone.models.layers import FrozenBatchNorm2d

from helpers import randomize_norms_, rel_err


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return randomize_norms_(build_resnet(50, num_classes=10)).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_fold_bn_classifier_agrees_and_keeps_original(classifier, image):
    names = list(classifier.state_dict())
    folded = fold_frozen_bn(classifier)
    with torch.no_grad():
        ref, out = classifier(image), folded(image)
    assert rel_err(out, ref) < 1e-4
    # The original is untouched: same names, still loads its own checkpoint.
    assert list(classifier.state_dict()) == names
    classifier.load_state_dict(copy.deepcopy(classifier.state_dict()))
    assert not any(".norm." in k for k in folded.state_dict())
    assert folded.res2[0].conv1.bias is not None


def test_fold_frozen_bn_backbone():
    """A detection-style backbone: FrozenBN everywhere, stem and res2 frozen, res4 out."""
    torch.manual_seed(0)
    backbone = randomize_norms_(build_resnet(50, norm="FrozenBN", out_features=["res4"],
                                             freeze_at=2)).eval()
    folded = fold_frozen_bn(backbone)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in folded.modules())
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel_err(folded(x)["res4"], backbone(x)["res4"]) < 1e-4


def test_subsampled_strided_1x1_agrees_keeps_names_and_trains(classifier, image):
    """R-50 (stride in the 1x1) has six strided 1x1 convs: conv1 and the shortcut of res3.0,
    res4.0, res5.0. The swap keeps every parameter name and the function."""
    fast = subsample_strided_1x1(copy.deepcopy(classifier))
    swapped = [n for n, m in fast.named_modules() if isinstance(m, SubsampledConvNorm)]
    assert sorted(swapped) == sorted(f"res{s}.0.{layer}" for s in (3, 4, 5)
                                     for layer in ("conv1", "shortcut"))
    assert list(fast.state_dict()) == list(classifier.state_dict())
    with torch.no_grad():
        assert rel_err(fast(image), classifier(image)) < 1e-4
    fast.train()(image).sum().backward()
    assert fast.res3[0].conv1.weight.grad.abs().sum() > 0


def test_fold_bn_leaves_training_bn_alone(classifier):
    train_model = copy.deepcopy(classifier).train()
    folded = fold_frozen_bn(train_model)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == \
        sum(isinstance(m, nn.BatchNorm2d) for m in train_model.modules())


def test_channels_last_agrees(classifier, image):
    cl = to_channels_last(copy.deepcopy(classifier))
    assert cl.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert rel_err(cl(image), classifier(image)) < 1e-4
        assert rel_err(cl(image.contiguous(memory_format=torch.channels_last)),
                       classifier(image)) < 1e-4


def test_optimize_for_inference_defaults_agree(classifier, image):
    fast = optimize_for_inference(classifier)
    with torch.no_grad():
        assert rel_err(fast(image), classifier(image)) < 1e-4
    assert classifier.res2[0].conv1.norm is not None  # original untouched


@pytest.mark.skipif(not supports_dtype("cpu", "bf16"),
                    reason="this CPU has no oneDNN bf16 support (AVX512-BF16/AMX)")
def test_bf16_autocast_agrees(classifier, image):
    with torch.no_grad():
        ref = classifier(image)
        with autocast_context("cpu", "bf16"):
            out = classifier(image)
        fast = optimize_for_inference(classifier, dtype="bf16")(image)
    assert out.dtype == torch.bfloat16 and fast.dtype == torch.float32
    assert rel_err(out, ref) < 5e-2
    assert rel_err(fast, ref) < 5e-2


def test_bad_dtype_is_rejected():
    with pytest.raises(ValueError, match="valid choices"):
        autocast_context("cpu", "fp8")
    if not supports_dtype("cpu", "fp16"):
        with pytest.raises(ValueError, match="not supported"):
            autocast_context("cpu", "fp16")


@pytest.mark.slow
@pytest.mark.skipif(not compile_available(), reason="torch.compile is not available here")
@pytest.mark.skipif(os.environ.get("RESNET_BACKBONE_TEST_COMPILE") != "1",
                    reason="inductor compiles for ~1 min on 2 CPU cores (outside the suite's "
                           "budget); set RESNET_BACKBONE_TEST_COMPILE=1 to run it")
def test_compile_agrees_on_tiny_cifar_net():
    torch.manual_seed(0)
    model = randomize_norms_(build_resnet(8, cifar=True, num_classes=10)).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    compiled = maybe_compile(fold_frozen_bn(model), True)
    with torch.no_grad():
        assert rel_err(compiled(x), model(x)) < 1e-4


def test_bn_folding_default_follows_the_measurements():
    from resnet_backbone.fast import folding_pays_off
    assert folding_pays_off("cpu", "fp32") and folding_pays_off("cpu", "bf16")
    assert folding_pays_off("cuda", "fp32") and folding_pays_off("cuda:1", "fp32")
    assert not folding_pays_off("cuda", "bf16") and not folding_pays_off("cuda", "fp16")


def test_strided_1x1_subsampling_follows_the_measurements(classifier, tmp_path):
    """Only on CPU in NCHW (BENCHMARKS.md: 1.04-1.08x R-50 training there; 0.98-0.99x
    channels-last); the trainer and the inference fast path pass their layout."""
    from resnet_backbone.classification.engine import ClassificationTrainer
    from helpers import cls_cfg_with

    assert subsampling_pays_off("cpu") and not subsampling_pays_off("cpu", channels_last=True)
    assert not subsampling_pays_off("cuda") and not subsampling_pays_off("cuda:1", False)

    def swapped(model):
        return sum(isinstance(m, SubsampledConvNorm) for m in model.modules())
    assert swapped(speed_up_strided_1x1(copy.deepcopy(classifier), "cpu")) == 6
    assert swapped(speed_up_strided_1x1(copy.deepcopy(classifier), "cpu", channels_last=True)) == 0
    assert swapped(optimize_for_inference(classifier)) == 0  # channels-last by default
    assert swapped(optimize_for_inference(classifier, channels_last=False)) == 6
    for channels_last, expected in ((False, 6), (True, 0)):
        trainer = ClassificationTrainer(cls_cfg_with(
            tmp_path / str(channels_last), "MODEL.NAME", "resnet50", "MODEL.NUM_CLASSES", 10,
            "SOLVER.CHANNELS_LAST", channels_last))
        assert swapped(trainer.model) == expected
