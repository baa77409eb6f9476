"""Named weights (``resnet_backbone.weights_registry``): a name is a file of the weights folder
whose sha256 is checked, ``create_model(name, weights=...)`` and detection's ``MODEL.WEIGHTS``
take it, and every way of getting it wrong is one line saying how to fix it.

Nothing is downloaded: the weights are a random torchvision ResNet-18 saved here, and the
registry's ``resnet18.torchvision`` entry is swapped (``monkeypatch``) for a copy whose file
name and sha256 are that file's.
"""
import dataclasses
import functools
import hashlib
from pathlib import Path

import pytest
import torch
import torchvision

from resnet_backbone import create_model, model_spec, weights_registry as wr
from resnet_backbone.cli import convert_weights
from resnet_backbone.models import registry

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

NAME = "resnet18.torchvision"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "detection"


@pytest.fixture(scope="module")
def tv_file(tmp_path_factory):
    """(a random torchvision ResNet-18 in eval mode, its state dict's file, the file's sha256)."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    for name, buffer in net.named_buffers():  # statistics that are not BN's defaults
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("weights")
    path = folder / "resnet18-test.pth"
    torch.save(net.state_dict(), path)
    return net, path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def weights_folder(tv_file, monkeypatch):
    """``$RESNET_BACKBONE_WEIGHTS`` is the test file's folder, and ``resnet18.torchvision``'s
    entry names that file with its real sha256."""
    _, path, digest = tv_file
    monkeypatch.setenv(wr.ENV_VAR, str(path.parent))
    patch_entry(monkeypatch, file_name=path.name, sha256=digest)
    return path.parent


def patch_entry(monkeypatch, **changes):
    entry = dataclasses.replace(wr.REGISTRY[NAME], **changes)
    monkeypatch.setitem(wr.REGISTRY, NAME, entry)
    return entry


def outputs(model, seed=1):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.eval()(torch.randn(2, 3, 64, 64))


def test_a_name_loads_what_its_path_loads_with_the_entrys_options(tv_file, weights_folder,
                                                                   monkeypatch):
    net, path, _ = tv_file
    assert wr.resolve_weights(NAME) == str(path)
    spec, built_with = model_spec("resnet18"), []

    @functools.wraps(spec.builder)
    def builder(**kwargs):
        built_with.append(kwargs)
        return spec.builder(**kwargs)

    monkeypatch.setitem(registry._MODELS, "resnet18", dataclasses.replace(spec, builder=builder))
    by_name = create_model("resnet18", weights=NAME)
    assert built_with == [{"stride_in_1x1": False, "shortcut": "B"}]
    by_path = create_model("resnet18", weights=str(path), stride_in_1x1=False)
    assert torch.equal(outputs(by_name), outputs(by_path))
    assert torch.allclose(outputs(by_name), outputs(net), atol=1e-5)  # torchvision's own
    # the entry's placement is the default, and a call that says otherwise is refused
    assert wr.REGISTRY[NAME].model_options() == {"stride_in_1x1": False, "shortcut": "B"}
    with pytest.raises(ValueError, match=r"trained with stride_in_1x1=False, the call sets "
                                         r"stride_in_1x1=True: leave it out"):
        create_model("resnet18", weights=NAME, stride_in_1x1=True)


def test_a_file_with_another_sha256_is_refused_naming_both(tv_file, weights_folder, monkeypatch):
    _, path, digest = tv_file
    wrong = "0" * 64
    patch_entry(monkeypatch, file_name=path.name, sha256=wrong)
    with pytest.raises(ValueError) as error:
        create_model("resnet18", weights=NAME)
    text = str(error.value)
    assert digest in text and f"expected sha256 {wrong}" in text and "\n" not in text, text
    assert str(path) in text and "download https://download.pytorch.org/models/" in text
    # a published prefix (torchvision's file-name convention) is checked as a prefix
    patch_entry(monkeypatch, file_name=path.name, sha256=digest[:8], hash_kind=wr.SHA256_PREFIX)
    assert wr.resolve_weights(NAME) == str(path)
    patch_entry(monkeypatch, file_name=path.name, sha256="0" + digest[1:8],
                hash_kind=wr.SHA256_PREFIX)
    with pytest.raises(ValueError, match=f"its sha256 is {digest}, expected sha256 prefix 0"):
        wr.resolve_weights(NAME)


def test_a_missing_file_says_where_to_put_it_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(wr.ENV_VAR, str(tmp_path / "empty"))
    entry = wr.REGISTRY[NAME]
    with pytest.raises(FileNotFoundError) as error:
        create_model("resnet18", weights=NAME)
    text = str(error.value)
    assert str(tmp_path / "empty" / entry.file_name) in text and entry.url in text, text
    assert "\n" not in text


def test_the_weights_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(wr.ENV_VAR, str(tmp_path / "mine"))
    assert wr.weights_dir() == tmp_path / "mine"
    monkeypatch.delenv(wr.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wr.weights_dir() == tmp_path / "xdg" / "resnet_backbone" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert wr.weights_dir() == tmp_path / "home" / ".cache" / "resnet_backbone" / "weights"


def test_bad_names_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(wr.ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError) as error:
        create_model("resnet50", weights="resnet50.imagenet")
    assert all(name in str(error.value) for name in wr.list_weights()), error.value
    # weights whose source publishes no checksum: the path, not the name
    (tmp_path / "R-50.pkl").write_bytes(b"not checked")
    with pytest.raises(ValueError, match=r"resnet50.msra cannot be used by name: its source "
                                         r"publishes no checksum .* give the file's path instead"):
        wr.resolve_weights("resnet50.msra")
    assert wr.REGISTRY["resnet50.msra"].sha256 is None
    with pytest.raises(FileNotFoundError, match="Weights file nowhere/r18.pth does not exist"):
        wr.resolve_weights("nowhere/r18.pth")


def test_weights_of_another_network_are_refused(tv_file, weights_folder):
    _, path, _ = tv_file
    with pytest.raises(ValueError, match=r"Weights resnet18.torchvision are resnet18's, not "
                                         r"resnet34's: use create_model\('resnet18'"):
        create_model("resnet34", weights=NAME)
    with pytest.raises(ValueError, match=r"resnet18-test.pth does not fit resnet34: .* missing"):
        create_model("resnet34", weights=str(path))
    with pytest.raises(ValueError, match="1000-class classifier, the model resnet18 has 10: build "
                                         "it with num_classes=1000"):
        create_model("resnet18", weights=str(path), num_classes=10)


def test_files_written_by_the_converter_load_by_path(tv_file, tmp_path):
    """``resnet-convert-weights`` outputs: caffe2 blobs (BN folded into an affine map) and a
    detectron2 backbone file (no classifier: it keeps its initial values)."""
    net, path, _ = tv_file
    caffe2, d2 = tmp_path / "r18_c2.pkl", tmp_path / "r18_d2.pth"
    assert convert_weights.main([str(path), str(caffe2), "--to", "caffe2"]) == 0
    assert convert_weights.main([str(path), str(d2), "--to", "detectron2"]) == 0
    reference = create_model("resnet18", weights=str(path), features_only=True)
    for converted in (caffe2, d2):
        model = create_model("resnet18", weights=str(converted), features_only=True)
        for ours, theirs in zip(outputs(model), outputs(reference)):
            assert torch.allclose(ours, theirs, atol=1e-4), converted


def test_model_weights_by_name_in_a_detector(tv_file, weights_folder, monkeypatch):
    """``MODEL.WEIGHTS resnet18.torchvision``: checked before the job, the entry's pixels and
    stride placement applied to the config, and loaded by the checkpointer both config systems
    use (``.engine.load_weights``). A name whose file is missing stops the job in one line."""
    pytest.importorskip("detectron2")
    from resnet_backbone.detection import get_detection_cfg
    from resnet_backbone.detection.checkpoint import check_weights_file
    from resnet_backbone.detection.engine import load_weights
    from resnet_backbone.detection.pretrained import apply_weights_meta
    from resnet_backbone.detection.trainer import DetectionTrainer

    net, path, _ = tv_file
    cfg = get_detection_cfg(str(CONFIG_DIR / "Demo-Shapes-R18-C4.yaml"),
                            ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", NAME])
    check_weights_file(cfg.MODEL.WEIGHTS)
    applied, _ = apply_weights_meta(cfg)
    assert cfg.INPUT.FORMAT == "RGB" and not cfg.MODEL.PAPER_RESNET.STRIDE_IN_1X1, applied
    assert list(cfg.MODEL.PIXEL_STD) == list(wr.TORCHVISION_STD_RGB)
    model = DetectionTrainer.build_model(cfg)
    checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
    load_weights(model, checkpointer, cfg.MODEL.WEIGHTS, resume=False)
    assert checkpointer.last_load["path"] == str(path)
    state = model.state_dict()
    assert torch.equal(state["backbone.res3.0.conv1.weight"], net.layer2[0].conv1.weight)
    assert torch.equal(state["roi_heads.res5.1.conv2.weight"], net.layer4[1].conv2.weight)

    patch_entry(monkeypatch, file_name="not-here.pth")
    with pytest.raises(FileNotFoundError, match=r"^MODEL.WEIGHTS resnet18.torchvision: Weights "
                                                r"resnet18.torchvision not found: download"):
        check_weights_file(NAME)


def test_a_named_vgg16_sets_the_detectors_pixels_and_fits_only_a_vgg16_backbone():
    pytest.importorskip("detectron2")
    from resnet_backbone.detection import get_detection_cfg
    from resnet_backbone.detection.pretrained import apply_weights_meta

    caffe_row = str(CONFIG_DIR / "faster_rcnn_VGG16_caffe_voc0712.yaml")
    cfg = get_detection_cfg(caffe_row, ["MODEL.WEIGHTS", "vgg16.torchvision"])
    applied, _ = apply_weights_meta(cfg)
    assert cfg.INPUT.FORMAT == "RGB" and len(applied) == 3, applied
    assert list(cfg.MODEL.PIXEL_MEAN) == list(wr.TORCHVISION_MEAN_RGB)
    with pytest.raises(ValueError, match="trained with FORMAT 'RGB', the command line sets "
                                         "INPUT.FORMAT 'BGR'"):
        apply_weights_meta(get_detection_cfg(caffe_row, ["MODEL.WEIGHTS", "vgg16.torchvision"]),
                           ["INPUT.FORMAT", "BGR"])
    resnet = get_detection_cfg(str(CONFIG_DIR / "Demo-Shapes-R18-C4.yaml"),
                               ["MODEL.WEIGHTS", "vgg16.torchvision"])
    with pytest.raises(ValueError, match="are VGG-16 weights, the config's MODEL.BACKBONE.NAME is "
                                         "build_paper_resnet"):
        apply_weights_meta(resnet)


def test_the_classifier_predictor_takes_a_name(tv_file, weights_folder, tmp_path):
    """``resnet-predict-cls --weights resnet18.torchvision``: the named file, verified, with the
    entry's preprocessing (torchvision's RGB mean / std) and ImageNet's class names."""
    from PIL import Image

    from resnet_backbone.classification.predictor import Predictor
    image = tmp_path / "x.png"
    Image.new("RGB", (80, 60), (200, 30, 90)).save(image)
    by_name = Predictor(NAME, topk=3)(str(image))
    by_path = Predictor(str(tv_file[1]), topk=3)(str(image))  # the layout implies the same
    assert by_name == by_path and by_name[0].class_name == \
        torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"][by_name[0].class_index]
