"""The pre- and post-processing around a detector's graph (``resnet_backbone.exported_detector``)
are detectron2's: the same resized size and pixels as ``ResizeShortestEdge`` (whose PIL
bilinear resampling of uint8 images the predictor reuses), the same boxes as
``detector_postprocess``; and the contract survives the file's metadata."""
import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from resnet_backbone.exported_detector import (DetectorContract, DetectorRunner, prepare,
                                               resized_shape, to_original)

SIZES = [(480, 640), (640, 480), (333, 1000), (1000, 333), (600, 600), (17, 3001), (1, 1),
         (127, 129), (800, 1333), (1333, 800)]


@pytest.mark.parametrize("short, longest", [(600, 1000), (800, 1333), (160, 200)])
def test_resized_shape_is_detectron2s(short, longest):
    for h, w in SIZES:
        assert resized_shape(h, w, short, longest) == \
            T.ResizeShortestEdge.get_output_shape(h, w, short, longest), (h, w)


@pytest.mark.parametrize("fmt", ["BGR", "RGB"])
def test_prepare_gives_detectron2s_input(fmt):
    """``prepare`` of an RGB image = detectron2's test mapper on the same image read in the
    model's format: ResizeShortestEdge, then (3, H, W) float."""
    rgb = np.random.default_rng(0).integers(0, 256, (97, 151, 3), dtype=np.uint8)
    contract = DetectorContract(fmt, 64, 90)
    image = rgb[:, :, ::-1] if fmt == "BGR" else rgb
    resized = T.ResizeShortestEdge([64, 64], 90).get_transform(image).apply_image(image)
    expected = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    got = prepare(rgb, contract)
    assert got.shape == expected.shape == (3, 58, 90)  # the longer side capped
    assert torch.equal(got, expected)


def test_boxes_back_in_the_original_pixels_as_detector_postprocess():
    boxes = torch.tensor([[10.0, 5.0, 60.0, 40.0], [-3.0, 2.0, 130.0, 70.0], [0, 0, 0.5, 0.5]])
    resized, original = (64, 128), (300, 500)
    instances = Instances(resized, pred_boxes=Boxes(boxes.clone()), scores=torch.ones(3))
    expected = detector_postprocess(instances, *original).pred_boxes.tensor
    # the graph clips to its input and drops empty boxes first (postprocess at its own size)
    at_input = detector_postprocess(Instances(resized, pred_boxes=Boxes(boxes.clone()),
                                              scores=torch.ones(3)), *resized).pred_boxes.tensor
    assert np.allclose(to_original(at_input, resized, original), expected.numpy(), atol=1e-4)


def test_runner_reads_every_input_kind_and_names_classes(tmp_path):
    """One graph, one contract: a path, a PIL image, RGB and BGR numpy arrays and a tensor of
    the same picture give the same detections; boxes come back in the picture's pixels."""
    from PIL import Image
    rgb = np.random.default_rng(1).integers(0, 256, (50, 80, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    seen = []

    def graph(x):  # one box covering the resized input, class 1
        seen.append(x)
        return torch.tensor([[0.0, 0.0, x.shape[2], x.shape[1]]]), torch.tensor([0.9]), torch.tensor([1])
    runner = DetectorRunner(graph, DetectorContract("BGR", 100, 1000, ["cat", "dog"], [3, 7]))
    outs = runner([str(path), Image.fromarray(rgb), rgb, torch.from_numpy(rgb).permute(2, 0, 1)])
    outs.append(runner(np.ascontiguousarray(rgb[:, :, ::-1]), array_format="BGR"))
    outs += runner(torch.from_numpy(rgb).permute(2, 0, 1)[None])  # a batch of one
    for out in outs:
        assert out.class_names == ["dog"] and out.image_size == (50, 80)
        assert np.allclose(out.boxes, [[0, 0, 80, 50]])
    assert len(seen) == 6 and all(torch.equal(seen[0], x) for x in seen)
    assert seen[0].shape == (3, 100, 160)
    assert torch.equal(seen[0], torch.from_numpy(
        np.asarray(Image.fromarray(rgb).resize((160, 100), Image.BILINEAR))[:, :, ::-1]
        .transpose(2, 0, 1).copy()).float())


def test_contract_round_trips_and_bad_metadata_is_one_error():
    contract = DetectorContract("RGB", 600, 1000, ["a", "b"])
    back = DetectorContract.from_json(contract.to_json(), "f.onnx")
    assert back == contract and back.category_ids == [1, 2]
    with pytest.raises(ValueError, match="f.onnx: its resnet_backbone.detector metadata"):
        DetectorContract.from_json('{"input_format": "RGB"}', "f.onnx")
    with pytest.raises(ValueError, match="only BGR and RGB"):
        DetectorContract("YUV-BT.601", 600, 1000)
