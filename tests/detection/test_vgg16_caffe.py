"""The Caffe VGG-16 configs (faster_rcnn_VGG16_caffe_*.yaml), the variant of the paper's VGG-16
rows of Tables 7 and 8: ``vgg16_caffe.pth`` (Caffe's VGG-16 in torchvision's layout, as
jwyang/faster-rcnn.pytorch ships it) loads completely, and with BGR 0-255 input minus the Caffe
means it computes what the torchvision-convention detector computes on the RGB image.

The file is synthetic: a random torchvision VGG-16 whose conv1_1 is turned into Caffe's
convention (input channels reversed, divided by torchvision's per-channel std). Its fc6/fc7 are
64-d (``MODEL.VGG16.FC_DIM 64``) to keep the file small; names and conv shapes are the real
file's.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from detectron2.data import DatasetMapper
from PIL import Image

from resnet_backbone.cli import train_det
from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.trainer import DetectionTrainer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detection"
ROWS = ["voc0712", "voc07++12", "coco2014"]
CAFFE_MEAN_BGR = [102.9801, 115.9465, 122.7717]  # py-faster-rcnn's PIXEL_MEANS
TV_STD_RGB = [58.395, 57.12, 57.375]
#: torchvision VGG-16 ``features`` index of each convolution, conv1_1 .. conv5_3.
CONV_INDEX = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
              "conv3_2": 12, "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
              "conv5_1": 24, "conv5_2": 26, "conv5_3": 28}
FC_DIM = 64
#: Small inputs and heads: the backbone is the real VGG-16, only fc6/fc7 and the images shrink.
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.VGG16.FC_DIM", FC_DIM, "MODEL.ROI_HEADS.NUM_CLASSES", 3,
         "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """(torchvision-convention state, its file, Caffe-convention state, vgg16_caffe.pth)."""
    torch.manual_seed(0)
    tv = torchvision.models.vgg16(weights=None).state_dict()
    for key in [k for k in tv if k.endswith(".bias")]:  # torchvision initialises them to 0
        tv[key] = 0.1 * torch.randn_like(tv[key])
    fc_shapes = {0: (FC_DIM, 512 * 7 * 7), 3: (FC_DIM, FC_DIM), 6: (1000, FC_DIM)}  # fc6, fc7, fc8
    for index, (rows, cols) in fc_shapes.items():
        tv[f"classifier.{index}.weight"] = 0.01 * torch.randn(rows, cols)
        tv[f"classifier.{index}.bias"] = 0.1 * torch.randn(rows)
    caffe = dict(tv)
    std = torch.tensor(TV_STD_RGB).view(1, 3, 1, 1)
    caffe["features.0.weight"] = (tv["features.0.weight"] / std).flip(1)  # RGB -> BGR, 0-255
    folder = tmp_path_factory.mktemp("vgg16_weights")
    torch.save(tv, folder / "vgg16_tv.pth")
    torch.save(caffe, folder / "vgg16_caffe.pth")
    return tv, folder / "vgg16_tv.pth", caffe, folder / "vgg16_caffe.pth"


def build_and_load(cfg):
    """As ``tools/train_det.py`` does: the trainer's model and checkpointer, MODEL.WEIGHTS."""
    model = DetectionTrainer.build_model(cfg)
    checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    return model.eval(), checkpointer.last_load


@pytest.mark.parametrize("row", ROWS)
def test_caffe_config_is_its_torchvision_row_with_caffe_input(row):
    caffe = get_detection_cfg(str(CONFIG_DIR / f"faster_rcnn_VGG16_caffe_{row}.yaml"))
    tv = get_detection_cfg(str(CONFIG_DIR / f"faster_rcnn_VGG16_{row}.yaml"))
    assert caffe.INPUT.FORMAT == "BGR" and list(caffe.MODEL.PIXEL_MEAN) == CAFFE_MEAN_BGR
    assert list(caffe.MODEL.PIXEL_STD) == [1.0, 1.0, 1.0]
    assert caffe.MODEL.WEIGHTS == "vgg16_caffe.pth"
    for cfg in (caffe, tv):  # everything else is the torchvision row's
        cfg.INPUT.FORMAT, cfg.MODEL.WEIGHTS = "", ""
        cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = [], []
    assert caffe.dump() == tv.dump()


def test_vgg16_caffe_loads_completely_and_matches_torchvision_convention(weight_files, tmp_path):
    _, tv_file, caffe_state, caffe_file = weight_files
    caffe_cfg = get_detection_cfg(str(CONFIG_DIR / "faster_rcnn_VGG16_caffe_voc0712.yaml"),
                                  SMALL + ["MODEL.WEIGHTS", str(caffe_file)])
    # The torchvision convention with the Caffe means (in RGB order): the two agree exactly,
    # zero padding included (padding is the mean pixel in both).
    tv_cfg = get_detection_cfg(str(CONFIG_DIR / "faster_rcnn_VGG16_voc0712.yaml"),
                               SMALL + ["MODEL.WEIGHTS", str(tv_file),
                                        "MODEL.PIXEL_MEAN", CAFFE_MEAN_BGR[::-1]])
    caffe_model, caffe_load = build_and_load(caffe_cfg)
    tv_model, _ = build_and_load(tv_cfg)

    # every convolution and fc6/fc7 came from the file; fc8 (classifier.6, no such layer in a
    # detector) was left out without an error
    loaded = caffe_model.state_dict()
    pairs = [(f"backbone.{conv}.{p}", f"features.{i}.{p}") for conv, i in CONV_INDEX.items()
             for p in ("weight", "bias")]
    pairs += [(f"roi_heads.box_head.fc{n}.{p}", f"classifier.{i}.{p}")
              for n, i in ((6, 0), (7, 3)) for p in ("weight", "bias")]
    for model_key, file_key in pairs:
        assert torch.equal(loaded[model_key], caffe_state[file_key]), model_key
    assert not [k for k in caffe_load["missing"]
                if k.startswith(("backbone.", "roi_heads.box_head."))]

    # one image through detectron2's mapper: BGR uint8 for the Caffe config, RGB for the other
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    record = {"file_name": str(tmp_path / "image.png"), "height": 64, "width": 80, "image_id": 0}
    bgr = DatasetMapper(caffe_cfg, is_train=False)(dict(record))["image"]
    rgb = DatasetMapper(tv_cfg, is_train=False)(dict(record))["image"]
    assert bgr.dtype == torch.uint8 and torch.equal(bgr, rgb.flip(0))
    assert torch.equal(rgb, torch.from_numpy(pixels).permute(2, 0, 1))
    with torch.no_grad():
        maps = [model.backbone(model.preprocess_image([{"image": image}]).tensor)["conv5_3"]
                for model, image in ((caffe_model, bgr), (tv_model, rgb))]
    assert maps[0].shape == (1, 512, 4, 5) and maps[1].abs().max() > 0.1
    difference = (maps[0] - maps[1]).abs().max().item()
    assert difference <= 1e-5 * maps[1].abs().max().item()  # measured: 1.1e-6 of a max 1.45


def test_missing_vgg16_caffe_file_is_one_error_line(tmp_path, monkeypatch, capsys):
    """``tools/train_det.py --config-file <caffe config>`` without the file: exit status 2 and
    one ``error:`` line naming the file and what to do, before any data is read."""
    monkeypatch.chdir(tmp_path)  # vgg16_caffe.pth is read from the working directory
    config = str(CONFIG_DIR / "faster_rcnn_VGG16_caffe_coco2014.yaml")
    rc = train_det.main(["--config-file", config, "MODEL.DEVICE", "cpu",
                         "OUTPUT_DIR", str(tmp_path / "out")])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in err, err
    assert last.startswith("error: MODEL.WEIGHTS vgg16_caffe.pth does not exist"), last
    assert str(tmp_path) in last and "MODEL.WEIGHTS /path/to/file" in last, last
