"""``resnet_backbone.classification.predictor.Predictor``: the top-k of a user's images, with the
preprocessing of the weights file. It scores as ``evaluate`` does (every test mode, on the
images the net trained on); every kind of image input gives the same answer; EXIF orientation is
applied; weights converted from torchvision and MSRA caffe2 predict what the source network
predicts with its own preprocessing (the metadata path); bad files fail with one line."""
import logging

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

from resnet_backbone import convert
from resnet_backbone.checkpoint import load_checkpoint_file, save_checkpoint_atomic, save_pickle_atomic
from resnet_backbone.classification.backbone_export import classifier_from_checkpoint, export_backbone
from resnet_backbone.classification.config import cfg_from_checkpoint
from resnet_backbone.classification.data import build_datasets, build_test_views
from resnet_backbone.classification.engine import ClassificationTrainer
from resnet_backbone.classification.evaluate import evaluate
from resnet_backbone.classification.predictor import Prediction, Predictor
from resnet_backbone.classification.transforms import Normalizer
from resnet_backbone.cli import convert_weights

from helpers import cls_cfg_with, randomize_norms_

#: torchvision's ImageNet preprocessing, in its own (0-1) units.
TV_MEAN, TV_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Small inputs on a shared machine: one torch thread (conftest's ``one_thread``; measured:
    the whole file 8 s instead of 17-45 s with two threads on two busy cores)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A ResNet-20 trained 2 iterations on synthetic 32x32 images, evaluated with resize 40,
    crop 32, scales {32, 48}: (model_final.pth, config, the first 4 training images). A small
    lr keeps its softmax far from saturated (lr 0.1 gives p > 0.9999 for every view), so the
    views' probabilities differ and a wrong average shows."""
    cfg = cls_cfg_with(tmp_path_factory.mktemp("cls"), "DATASETS.SYNTHETIC.NUM_TRAIN", 16,
                       "DATASETS.SYNTHETIC.NUM_TEST", 8, "SOLVER.IMS_PER_BATCH", 8,
                       "SOLVER.BASE_LR", 0.01,
                       "SOLVER.MAX_ITER", 2, "SOLVER.CHECKPOINT_PERIOD", 2, "TEST.EVAL_PERIOD", 2,
                       "TEST.RESIZE", 40, "TEST.CROP_SIZE", 32, "TEST.SCALES", [32, 48])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as _one_thread, which a module fixture comes before
    try:
        ClassificationTrainer(cfg).train()
    finally:
        torch.set_num_threads(threads)
    train = build_datasets(cfg)[0]
    return f"{cfg.OUTPUT_DIR}/model_final.pth", cfg, train.subset(torch.arange(4))


def evaluated_scores(path, images, mode, **cfg_changes):
    """``evaluate``'s probabilities of the train_cls checkpoint ``path`` on ``images``."""
    state = load_checkpoint_file(path)
    model, cfg = classifier_from_checkpoint(path, state)
    cfg.merge_from_list([x for kv in cfg_changes.items() for x in kv])
    views = build_test_views(cfg, Normalizer(state["pixel_mean"], cfg.INPUT.PIXEL_STD))
    out = evaluate(model, images, views, mode, batch_size=4, return_scores=True)
    return out["scores"][torch.argsort(torch.tensor(out["indices"]))]


@pytest.mark.parametrize("mode", ["center", "ten_crop", "multi_scale"])
def test_predictor_scores_as_evaluate_does(run, mode):
    path, cfg, images = run
    predictor = Predictor(path, mode=mode, topk=3)
    assert (predictor.views.resize, predictor.views.crop, predictor.views.scales) == (40, 32, [32, 48])
    got = predictor.probabilities(list(images.images))
    expected = evaluated_scores(path, images, mode)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    top = predictor(list(images.images))
    assert [t[0].class_index for t in top] == expected.argmax(1).tolist()
    assert top[0][0].class_name == f"class{top[0][0].class_index}" and len(top[0]) == 3
    views = predictor.views(mode, images.images[0])  # one tensor, or one per scale
    with torch.no_grad():
        each = torch.cat([torch.softmax(predictor.model(v), 1) for v in
                          (views if isinstance(views, list) else [views])])
    torch.testing.assert_close(got[0], each.mean(0), atol=1e-6, rtol=0)  # the views' mean
    assert len(each) == 1 or (each - each.mean(0)).abs().max() > 1e-3  # views that disagree


def test_a_run_evaluated_on_whole_images_predicts_at_its_training_size(run, tmp_path):
    """TEST.RESIZE 0 (CIFAR: the 32x32 images as they are): images are brought to the trained
    size, which leaves the run's own images unchanged, so the scores are evaluate's."""
    path, _, images = run
    state = load_checkpoint_file(path)
    cfg = cfg_from_checkpoint(state)
    cfg.TEST.RESIZE, cfg.TEST.CROP_SIZE = 0, 0
    state["cfg"] = cfg.dump()
    save_checkpoint_atomic(state, tmp_path / "whole.pth")
    predictor = Predictor(tmp_path / "whole.pth")
    assert (predictor.views.resize, predictor.views.crop) == (32, 0)
    torch.testing.assert_close(predictor.probabilities(list(images.images)),
                               evaluated_scores(tmp_path / "whole.pth", images, "center"),
                               atol=1e-5, rtol=0)
    assert predictor.probabilities(np.zeros((64, 48, 3), np.uint8)).shape == (1, 10)  # resized


def test_every_kind_of_input_gives_the_same_prediction(run, tmp_path):
    path, _, images = run
    predictor = Predictor(path, topk=2)
    chw = images.images[0]
    rgb = chw.permute(1, 2, 0).numpy()
    Image.fromarray(rgb).save(tmp_path / "image.png")
    expected = predictor(tmp_path / "image.png")
    assert len(expected) == 2 and isinstance(expected[0], Prediction)
    for same in (predictor(str(tmp_path / "image.png")), predictor(Image.fromarray(rgb)),
                 predictor(rgb), predictor(rgb[:, :, ::-1].copy(), array_format="BGR"),
                 predictor(chw), predictor(chw[None])[0], predictor(rgb[None])[0],
                 predictor([chw, tmp_path / "image.png"])[1]):  # in a batch: float rounding
        assert [p[:2] for p in same] == [p[:2] for p in expected]
        assert np.allclose([p.probability for p in same], [p.probability for p in expected],
                           rtol=0, atol=1e-6)


def test_exif_rotated_jpeg_predicts_as_the_upright_image(run, tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 (rotate clockwise to view) predicts as its
    stored pixels rotated upright (on a non-square image: a missed rotation changes the crop)."""
    path, _, images = run
    stored = torch.cat([images.images[1], images.images[2]], dim=2).permute(1, 2, 0).numpy()  # 32x64
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "sideways.jpg") as im:
        decoded = np.asarray(im.convert("RGB"))
    predictor = Predictor(path)
    upright = predictor.probabilities(np.rot90(decoded, k=-1).copy())
    assert torch.equal(predictor.probabilities(tmp_path / "sideways.jpg"), upright)


def test_class_names_come_from_the_checkpoint(run, tmp_path, caplog):
    path, cfg, _ = run
    state = load_checkpoint_file(path)
    assert state["classes"] == [f"class{i}" for i in range(10)]
    assert load_checkpoint_file(f"{cfg.OUTPUT_DIR}/model_0000001.pth")["classes"] == state["classes"]
    del state["classes"]  # written before checkpoints recorded them
    save_checkpoint_atomic(state, tmp_path / "old.pth")
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.cls"):
        predictor = Predictor(tmp_path / "old.pth")
    assert predictor.classes == [str(i) for i in range(10)]
    assert len([r for r in caplog.records if "records no class names" in r.message]) == 1


def torchvision_probabilities(model, image: torch.Tensor) -> torch.Tensor:
    """torchvision's own ImageNet inference: Resize 256, CenterCrop 224, Normalize."""
    prep = T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224),
                      T.ConvertImageDtype(torch.float32), T.Normalize(TV_MEAN, TV_STD)])
    with torch.no_grad():
        return torch.softmax(model(prep(image)[None]), 1)


@pytest.fixture(scope="module")
def torchvision_net():
    """An ImageNet ResNet-18 as torchvision builds it (random weights and BN statistics: no
    download), a 200x260 photo-like image (uint8 CHW) and torchvision's probabilities of it."""
    torch.manual_seed(0)
    model = randomize_norms_(torchvision.models.resnet18()).eval()
    ramp = torch.linspace(0, 1, 260)[None, None] * torch.linspace(0, 1, 200)[None, :, None]
    image = (255 * (ramp * torch.tensor([1.0, 0.6, 0.2])[:, None, None]
                    + 0.3 * torch.rand(3, 200, 260))).clamp(0, 255).to(torch.uint8)
    return model, image, torchvision_probabilities(model, image)


def test_converted_torchvision_weights_predict_as_torchvision(torchvision_net, tmp_path, capsys):
    """resnet-convert-weights records torchvision's preprocessing (RGB, its mean and std) and
    the network; the predictor then gives torchvision's probabilities, and its class names."""
    model, image, expected = torchvision_net
    torch.save(model.state_dict(), tmp_path / "tv.pth")
    assert convert_weights.main([str(tmp_path / "tv.pth"), str(tmp_path / "r18.pth")]) == 0
    assert "meta  resnet18 (torchvision_resnet" in capsys.readouterr().out
    meta = load_checkpoint_file(tmp_path / "r18.pth")["meta"]
    assert (meta["model_name"], meta["input_format"], meta["stride_in_1x1"], meta["num_classes"]) == \
        ("resnet18", "RGB", False, 1000)
    for weights in ("r18.pth", "tv.pth"):  # torchvision's own file: the same meta, made on reading
        predictor = Predictor(tmp_path / weights, topk=1)
        got = predictor.probabilities(image)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)
    top = predictor(image)[0]
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert top.class_index == expected.argmax().item()
    assert top.class_name == weights.meta["categories"][top.class_index]


def test_converted_msra_caffe2_weights_see_bgr_images(torchvision_net, tmp_path):
    """The MSRA caffe2 models take BGR images minus the BGR mean, not divided (std 1). The
    torchvision net with its first convolution taking BGR and dividing by the std, written as
    caffe2 blobs, converted and predicted with: torchvision's probabilities again."""
    model, image, expected = torchvision_net
    sd = convert.torchvision_resnet_to_paper(model.state_dict())
    std = torch.tensor(TV_STD) * 255
    sd["stem.conv1.weight"] = (sd["stem.conv1.weight"] / std[None, :, None, None]).flip(1)
    save_pickle_atomic({"blobs": convert.paper_to_caffe2_resnet(sd)}, tmp_path / "R-18.pkl")
    assert convert_weights.main([str(tmp_path / "R-18.pkl"), str(tmp_path / "r18.pth")]) == 0
    meta = load_checkpoint_file(tmp_path / "r18.pth")["meta"]
    assert (meta["input_format"], meta["pixel_std"], meta["stride_in_1x1"]) == ("BGR", [1.0] * 3, True)
    got = Predictor(tmp_path / "r18.pth").probabilities(image)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-4)


def test_files_that_cannot_classify_are_refused_with_what_to_do(run, torchvision_net, tmp_path):
    path, _, _ = run
    export_backbone(path, tmp_path / "backbone.pth")
    with pytest.raises(ValueError, match="a backbone file has no classifier; .*give the file it "
                                         "was made from"):
        Predictor(tmp_path / "backbone.pth")
    paper = convert.torchvision_resnet_to_paper(torchvision_net[0].state_dict())
    torch.save(paper, tmp_path / "old.pth")  # resnet-convert-weights before it wrote meta
    with pytest.raises(ValueError, match="do not record how they see images.*resnet-convert-weights "
                                         "resnet50-0676ba61.pth .*old.pth"):
        Predictor(tmp_path / "old.pth")
    meta = {"model_name": "resnet34", "input_format": "RGB", "pixel_mean": [0] * 3, "pixel_std": [1] * 3}
    torch.save({"model": paper, "meta": meta}, tmp_path / "says_r34.pth")
    with pytest.raises(ValueError, match=r"do not fit resnet34, the network its meta \(model_name\) "
                                         r"names: .*missing \(e.g. res2.2.conv1.weight\)") as e:
        Predictor(tmp_path / "says_r34.pth")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="mode 'five_crop' is not valid"):
        Predictor(path, mode="five_crop")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback of a machine without CUDA")
def test_cuda_without_cuda_runs_on_the_cpu(run, capsys):
    assert Predictor(run[0], device="cuda").device == "cpu"
    assert "CUDA is not available: running on the CPU" in capsys.readouterr().err
