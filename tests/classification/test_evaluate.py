"""Classifier evaluation (``resnet_backbone.classification.evaluate``): the center, ten-crop and
multi-scale test views (``TestViews``) score as a direct computation does."""
import math

import pytest
import torch
import torchvision.transforms.functional as TF

from resnet_backbone import create_model
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.transforms import Normalizer, TestViews
from resnet_backbone.data.datasets import ImageFolderDataset
from resnet_backbone.data.synthetic import make_synthetic, write_image_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ImageNet-layout tree of JPEGs of different sizes (2 classes)."""
    root = tmp_path_factory.mktemp("imagenet")
    write_image_folder(root, "val", make_synthetic(3, num_classes=2, seed=3), size=(56, 44))
    write_image_folder(root, "val", make_synthetic(2, num_classes=2, seed=4), size=(40, 64), first_index=3)
    return root


def _direct_scores(model, img, views_fn):
    with torch.no_grad():
        return torch.stack([torch.softmax(model(v[None]), 1)[0] for v in views_fn(img)]).mean(0)


def test_ten_crop_and_multi_scale_match_a_direct_computation(folder):
    torch.manual_seed(0)
    model = create_model("cifar_resnet20", num_classes=2).eval()
    dataset = ImageFolderDataset(str(folder), "val")
    mean = torch.rand(3, 24, 24) * 255
    norm = Normalizer(mean, [1, 1, 1])
    views = TestViews(norm, resize=32, crop=24, scales=[24, 40], flip=True)
    ten = views.ten_crop(dataset[0][0])
    assert ten.shape == (10, 3, 24, 24)
    assert torch.allclose(ten[5] + mean, (ten[1] + mean).flip(-1), atol=1e-4)  # flip of top-right
    for mode in ("center", "ten_crop", "multi_scale"):
        out = evaluate(model, dataset, views, mode, batch_size=2, return_scores=True)
        assert out["count"] == 5 and out["scores"].shape == (5, 2)
        for row, idx in zip(out["scores"], out["indices"]):
            img = TF.pil_to_tensor(dataset[idx][0])
            if mode == "center":
                direct = _direct_scores(model, img, lambda x: [norm(TF.center_crop(TF.resize(x, 32, antialias=True), 24))])
            elif mode == "ten_crop":
                direct = _direct_scores(model, img, lambda x: [norm(v) for v in TF.ten_crop(TF.resize(x, 32, antialias=True), 24)])
            else:
                def ms(x):
                    vs = [norm(TF.resize(x, s, antialias=True)) for s in (24, 40)]
                    return [u for v in vs for u in (v, v.flip(-1))]
                direct = _direct_scores(model, img, ms)
            assert torch.allclose(row, direct, atol=1e-5), mode
        labels = torch.tensor([dataset[i][1] for i in out["indices"]])
        top1 = 100 * (out["scores"].argmax(1) != labels).float().mean().item()
        assert math.isclose(out["top1_err"], top1, abs_tol=1e-6) and out["top5_err"] == 0.0  # 2 classes

