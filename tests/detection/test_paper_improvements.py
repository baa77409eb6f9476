"""The appendix's detection improvements (Table 9): box refinement, global context, multi-scale
testing. Their identities with the baseline, their building blocks, and their configuration
errors; the train / evaluate runs are in tests/cli/test_train_det.py."""
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage

from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.box_refinement import box_voting, top_class_boxes
from resnet_backbone.detection.demo import demo_config_file
from resnet_backbone.detection.multiscale import (ScalePyramid, build_scale_pyramid,
                                                  check_test_scales, pyramid_factor,
                                                  select_adjacent_scales)

#: The demo's ResNet-18 C4 detector (3 classes) on 128 x 160 images.
SMALL = ["INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160"]
NO_VOTING = ["MODEL.PAPER_IMPROVEMENTS.BOX_VOTING", "False"]


def detector(*opts):
    cfg = get_detection_cfg(demo_config_file(), SMALL + list(opts))
    torch.manual_seed(0)
    return build_model(cfg).eval()


def same_weights(model, *opts):
    other = detector(*opts)
    other.load_state_dict(model.state_dict())
    return other


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(3, 128, 160, generator=generator) * 255, "height": 128,
             "width": 160} for _ in range(2)]


def detections(model, images):
    with torch.no_grad():
        return [out["instances"] for out in model(images)]


def assert_same_detections(actual, expected, atol=0.0):
    for a, e in zip(actual, expected):
        assert len(a) == len(e) > 0
        assert torch.equal(a.pred_classes, e.pred_classes)
        torch.testing.assert_close(a.pred_boxes.tensor, e.pred_boxes.tensor, rtol=0, atol=atol)
        torch.testing.assert_close(a.scores, e.scores, rtol=0, atol=atol)


def test_global_context_adds_exactly_the_classifier_weights_of_the_concatenated_feature():
    baseline, context = detector(), detector("MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True")
    base, ctx = dict(baseline.named_parameters()), dict(context.named_parameters())
    assert base.keys() == ctx.keys()
    changed = {n for n in base if base[n].shape != ctx[n].shape}
    assert changed == {"roi_heads.box_predictor.cls_score.weight",
                       "roi_heads.box_predictor.bbox_pred.weight"}
    width, classes = 512, 3  # ResNet-18's res5; the demo's classes
    extra = sum(p.numel() for p in ctx.values()) - sum(p.numel() for p in base.values())
    assert extra == width * (classes + 1) + width * 4 * classes  # == 8192


def test_global_context_feature_is_the_whole_image_through_res5(images):
    model = detector("MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True")
    heads = model.roi_heads
    regions = [Instances((128, 160), proposal_boxes=Boxes(torch.tensor(
        [[10.0, 20.0, 60.0, 90.0], [0.0, 0.0, 160.0, 128.0]])))]
    with torch.no_grad():
        features = model.backbone(model.preprocess_image(images[:1]).tensor)
        x = heads.region_features(features, regions)
    assert x.shape == (2, 1024)
    # the second region is the whole image: its own feature equals the global one
    torch.testing.assert_close(x[1, :512], x[1, 512:])
    torch.testing.assert_close(x[0, 512:], x[1, 512:])  # one global feature per image


def test_global_context_in_training_normalises_regions_and_whole_images_as_one_batch(images):
    """With BN in training (the demo's ResNet-18), the whole-image RoI goes through res5 in the
    regions' batch: a region that is the whole image gets exactly the context feature, and each
    BN layer of res5 updates its running statistics once per step. (A separate pass normalised
    the context by a batch of one RoI per image and updated the statistics twice.)"""
    model = detector("MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True")
    norms = [m for m in model.roi_heads.res5.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms, "the demo's res5 has BN layers"
    regions = [Instances((128, 160), proposal_boxes=Boxes(torch.tensor(
        [[10.0, 20.0, 60.0, 90.0], [30.0, 5.0, 150.0, 70.0], [0.0, 0.0, 160.0, 128.0]])))]
    features = model.backbone(model.preprocess_image(images[:1]).tensor)
    model.train()
    with torch.no_grad():
        x = model.roi_heads.region_features(features, regions)
    torch.testing.assert_close(x[2, :512], x[2, 512:])
    assert [int(m.num_batches_tracked) for m in norms] == [1] * len(norms)


def test_global_context_is_each_images_own_in_a_batch_of_two_sizes(images):
    """Two images of different sizes, padded into one batch: each region gets the context of its
    own image, the whole of it and nothing of the padding."""
    model = detector("MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True")
    small = {"image": images[1]["image"][:, :96, :112], "height": 96, "width": 112}
    sizes = [(128, 160), (96, 112)]
    regions = [Instances(size, proposal_boxes=Boxes(torch.tensor([[0.0, 0.0, size[1], size[0]]])))
               for size in sizes]
    with torch.no_grad():
        batch = model.preprocess_image([images[0], small])
        assert batch.image_sizes == sizes and tuple(batch.tensor.shape[2:]) == (128, 160)
        x = model.roi_heads.region_features(model.backbone(batch.tensor), regions)
    # each region is its whole image, so its feature equals its image's context
    torch.testing.assert_close(x[:, :512], x[:, 512:])
    assert not torch.allclose(x[0, 512:], x[1, 512:])


def training_losses(model, images):
    """The detector's training losses on ``images`` with one ground-truth box each, RNG fixed (the
    RPN's and the ROI heads' sampling)."""
    batch = [dict(image, instances=Instances((image["height"], image["width"]),
                                             gt_boxes=Boxes(torch.tensor([[20.0, 30.0, 90.0, 100.0]])),
                                             gt_classes=torch.tensor([1])))
             for image in images]
    model.train()
    torch.manual_seed(3)
    with EventStorage():  # the heads log their sampling statistics
        return {name: float(loss.detach()) for name, loss in model(batch).items()}


def test_box_refinement_leaves_training_unchanged(images):
    """Refinement is inference only: the same weights give the same training losses."""
    baseline = detector()
    refined = same_weights(baseline, "MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True")
    expected = training_losses(baseline, images)
    assert set(expected) >= {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert training_losses(refined, images) == pytest.approx(expected, rel=1e-6)


def test_box_refinement_with_zero_box_deltas_reproduces_the_baseline(images):
    """Zero deltas: each regressed box is its proposal, so the second pass repeats the first,
    and NMS on the union keeps exactly the baseline's detections (voting off)."""
    baseline = detector()
    predictor = baseline.roi_heads.box_predictor
    with torch.no_grad():
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    refined = same_weights(baseline, "MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True", *NO_VOTING)
    # scores differ from the baseline's by float rounding only: measured 6e-8
    assert_same_detections(detections(refined, images), detections(baseline, images), atol=1e-5)


def record_region_calls(model, monkeypatch):
    """The ``regions`` of every ``roi_heads.region_features`` call, in order."""
    calls, original = [], model.roi_heads.region_features
    monkeypatch.setattr(model.roi_heads, "region_features",
                        lambda features, regions: calls.append(regions) or original(features, regions))
    return calls


def test_box_refinement_pools_its_second_pass_from_the_regressed_box(images, monkeypatch):
    """A head that regresses every box by a known shift (dx = 0.1: a tenth of its width to the
    right): the second pass must pool exactly those shifted boxes, clipped to the image."""
    model = detector("MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True", *NO_VOTING)
    predictor = model.roi_heads.box_predictor
    with torch.no_grad():
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.copy_(torch.tensor([1.0, 0, 0, 0]).repeat(3))  # weights (10, 10, 5, 5)
    calls = record_region_calls(model, monkeypatch)
    detections(model, images)
    assert len(calls) == 2  # the first pass and the refinement, each over the whole batch
    for first, second in zip(*calls):
        boxes = first.proposal_boxes.tensor
        shift = 0.1 * (boxes[:, 2] - boxes[:, 0])
        expected = Boxes(boxes + torch.stack([shift, 0 * shift, shift, 0 * shift], dim=1))
        expected.clip(first.image_size)
        assert len(boxes) > 0
        torch.testing.assert_close(second.proposal_boxes.tensor, expected.tensor)


def max_same_class_iou(instances) -> float:
    iou = pairwise_iou(instances.pred_boxes, instances.pred_boxes)
    same = instances.pred_classes[:, None] == instances.pred_classes[None, :]
    iou = iou.masked_fill(~same | torch.eye(len(instances), dtype=torch.bool), 0.0)
    return float(iou.max())


def test_box_refinement_nms_uses_its_own_threshold(images):
    """NMS on the union of both passes runs at REFINEMENT_NMS_THRESH, not NMS_THRESH_TEST (both
    are 0.3 in the paper's configs, so only different values show which one is used)."""
    def refined(refinement_nms, test_nms):
        return detections(detector("MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True", *NO_VOTING,
                                   "MODEL.PAPER_IMPROVEMENTS.REFINEMENT_NMS_THRESH", refinement_nms,
                                   "MODEL.ROI_HEADS.NMS_THRESH_TEST", test_nms), images)
    strict = refined("0.3", "1.0")
    assert all(len(d) > 1 and max_same_class_iou(d) <= 0.3 for d in strict)
    loose = refined("1.0", "0.3")  # the union's near-duplicates survive (measured IoU ~0.97)
    assert max(max_same_class_iou(d) for d in loose) > 0.6


@pytest.mark.parametrize("context,multiscale", [(False, False), (True, False), (True, True)],
                         ids=["refinement", "refinement+context", "refinement+context+multiscale"])
def test_an_image_without_proposals_gets_no_detection_and_its_batch_theirs(images, context,
                                                                         multiscale):
    """An image the RPN gives no proposal (an empty image, an untrained RPN) gets no detection,
    and the other images of its batch theirs."""
    model = detector("MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True",
                     "MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", str(context),
                     "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "-1.0")
    batch = model.preprocess_image(images)
    proposals = [Instances(size, proposal_boxes=Boxes(boxes), objectness_logits=torch.zeros(len(boxes)))
                 for size, boxes in zip(batch.image_sizes, [torch.zeros(0, 4), torch.tensor(
                     [[10.0, 20.0, 60.0, 90.0], [30.0, 5.0, 150.0, 70.0]])])]
    with torch.no_grad():
        features = model.backbone(batch.tensor)
        if multiscale:
            features = build_scale_pyramid(model.backbone, batch, features, "res4", (96, 128, 192),
                                           224)
        empty, other = model.roi_heads(batch, features, proposals)[0]
    assert len(empty) == 0 and len(other) > 0


def test_top_class_boxes_takes_each_regions_best_class_clipped():
    boxes = torch.tensor([[0.0, 0, 10, 10, 5, 5, 300, 300], [1, 1, 2, 2, 3, 3, 4, 4]])
    probs = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])  # 2 classes + background
    chosen = top_class_boxes(boxes, probs, (100, 200)).tensor
    assert chosen.tolist() == [[5, 5, 200, 100], [1, 1, 2, 2]]


def test_box_voting_is_the_score_weighted_mean_of_overlapping_boxes_of_the_class():
    kept = Instances((100, 100), pred_boxes=Boxes(torch.tensor([[10.0, 10, 50, 50]])),
                     scores=torch.tensor([0.9]), pred_classes=torch.tensor([0]))
    boxes = torch.tensor([
        [10.0, 10, 50, 50, 10, 10, 50, 50],   # the kept box (class 0), also as class 1
        [12.0, 12, 52, 52, 12, 12, 52, 52],   # IoU 0.82 with it: votes for class 0
        [30.0, 30, 70, 70, 30, 30, 70, 70],   # IoU 0.14: does not vote
    ])
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1], [0.8, 0.1, 0.1]])
    voted = box_voting(kept, boxes, probs, score_thresh=0.05, vote_thresh=0.8)
    expected = (0.9 * torch.tensor([10.0, 10, 50, 50]) + 0.3 * torch.tensor([12.0, 12, 52, 52]))
    torch.testing.assert_close(voted.pred_boxes.tensor[0], expected / 1.2)
    assert voted.scores.tolist() == kept.scores.tolist()  # scores are kept
    # a class-1 vote at the same place does not count; a higher threshold leaves the box
    alone = box_voting(kept, boxes, probs, score_thresh=0.05, vote_thresh=0.9)
    assert torch.equal(alone.pred_boxes.tensor, kept.pred_boxes.tensor)


@pytest.mark.parametrize("improvements", [[], ["MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True",
                                               "MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True"]],
                         ids=["baseline", "refinement+context"])
def test_multiscale_testing_on_the_single_test_scale_is_single_scale_testing(images, improvements):
    single = detector(*improvements)
    multi = same_weights(single, *improvements, "MODEL.META_ARCHITECTURE", "PaperRCNN",
                         "MODEL.PAPER_IMPROVEMENTS.TEST_SCALES", "[128]")
    assert multi.test_scales == (128,)
    assert_same_detections(detections(multi, images), detections(single, images))


def test_pyramid_levels_are_the_backbone_on_the_resized_image(images):
    """Scales [64, 128, 256] of a 128 x 160 input: res4 maps (stride 16) of 64 x 80, the input's
    own map (the same tensor, not recomputed) and 256 x 320."""
    model = detector()
    with torch.no_grad():
        batch = model.preprocess_image(images)
        features = model.backbone(batch.tensor)
        pyramid = build_scale_pyramid(model.backbone, batch, features, "res4", (64, 128, 256), 224)
    for maps, factors, i in zip(pyramid.maps, pyramid.factors, range(2)):
        assert factors.tolist() == [0.5, 1.0, 2.0]
        assert [tuple(m.shape[2:]) for m in maps] == [(4, 5), (8, 10), (16, 20)]
        assert maps[1].data_ptr() == features["res4"][i:i + 1].data_ptr()
    assert pyramid.single_scale is features


def test_pyramid_caps_the_longer_side_of_each_level():
    """A 32 x 160 input (1:5), scales [32, 64, 128]: the levels 32 x 160, 64 x 320 and, capped
    at a longer side of 320, 64 x 320 again (the same map, not recomputed); no cap (0) gives
    128 x 640."""
    model = detector()
    image = {"image": torch.rand(3, 32, 160, generator=torch.Generator().manual_seed(2)) * 255,
             "height": 32, "width": 160}
    with torch.no_grad():
        batch = model.preprocess_image([image])
        features = model.backbone(batch.tensor)
        capped, uncapped = (build_scale_pyramid(model.backbone, batch, features, "res4",
                                                (32, 64, 128), 224, max_size=max_size)
                            for max_size in (320, 0))
    assert capped.factors[0].tolist() == [1.0, 2.0, 2.0]
    assert [tuple(m.shape[2:]) for m in capped.maps[0]] == [(2, 10), (4, 20), (4, 20)]
    assert capped.maps[0][2] is capped.maps[0][1]
    assert uncapped.factors[0].tolist() == [1.0, 2.0, 4.0]
    assert tuple(uncapped.maps[0][2].shape[2:]) == (8, 40)


def test_the_paper_pyramid_of_a_600_x_1000_input_is_not_capped():
    assert [pyramid_factor(600, 1000, s, 4000) for s in (200, 400, 600, 800, 1000)] == \
        [s / 600 for s in (200, 400, 600, 800, 1000)]
    assert pyramid_factor(200, 1000, 1000, 4000) == 4.0  # 1000 x 5000 -> 800 x 4000


def ramp_pyramid(maxout_after_res5: bool) -> ScalePyramid:
    """Two levels (factors 0.5 and 1) of one 320-px-wide image, 3 channels of known values:
    channel 0 is each cell's x coordinate in input-image pixels (so a box pooled at its scaled
    coordinates averages to its centre x at both levels); channels 1 and 2 are constants, 7 and
    2 at the first level, 4 and 5 at the second."""
    maps = []
    for factor, constants in ((0.5, (7.0, 2.0)), (1.0, (4.0, 5.0))):
        height, width = int(16 * factor), int(20 * factor)  # stride 16 cells of a 256 x 320 image
        x = (torch.arange(width, dtype=torch.float32) + 0.5) * 16 / factor
        feature_map = torch.stack([x.expand(height, width),
                                   torch.full((height, width), constants[0]),
                                   torch.full((height, width), constants[1])])
        maps.append(feature_map[None])
    return ScalePyramid([maps], [torch.tensor([0.5, 1.0])], 224, {}, maxout_after_res5)


def test_pyramid_pools_each_box_at_its_scaled_coordinates_and_takes_the_maximum():
    pooler = detector().roi_heads.pooler  # ROIAlignV2, 1/16
    box = Boxes(torch.tensor([[96.0, 64.0, 160.0, 128.0]]))  # centre x 128
    mean = lambda pooled: pooled.mean(dim=[2, 3])  # noqa: E731 (a linear head)
    features = ramp_pyramid(True).region_features(pooler, [box], mean)
    # x centre at both levels (unscaled coordinates would read 256 at factor 0.5), then the max
    # of each channel over the two levels
    torch.testing.assert_close(features, torch.tensor([[128.0, 7.0, 5.0]]))


@pytest.mark.parametrize("after_res5, expected", [(True, [-128.0, -4.0, -2.0]),
                                                  (False, [-128.0, -7.0, -5.0])])
def test_maxout_comes_after_the_head_as_the_paper_says(after_res5, expected):
    """A head that negates: the max of the heads' outputs (the paper: pooling and the layers
    after it at each scale, then maxout) is minus the smaller level; the head of the max of the
    pooled maps (the cheaper option) is minus the larger."""
    pooler = detector().roi_heads.pooler
    box = Boxes(torch.tensor([[96.0, 64.0, 160.0, 128.0]]))
    negated_mean = lambda pooled: -pooled.mean(dim=[2, 3])  # noqa: E731
    features = ramp_pyramid(after_res5).region_features(pooler, [box], negated_mean)
    torch.testing.assert_close(features, torch.tensor([expected]))


def test_global_context_under_multiscale_testing_comes_from_the_single_scale_map(images):
    """The context is trained on the single-scale map; a pyramid without that scale must not
    change it."""
    model = detector("MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT", "True")
    regions = [Instances((128, 160), proposal_boxes=Boxes(torch.tensor([[10.0, 20.0, 60.0, 90.0]])))]
    with torch.no_grad():
        batch = model.preprocess_image(images[:1])
        features = model.backbone(batch.tensor)
        pyramid = build_scale_pyramid(model.backbone, batch, features, "res4", (64, 256), 224)
        single, multi = (model.roi_heads.region_features(f, regions) for f in (features, pyramid))
    torch.testing.assert_close(multi[:, 512:], single[:, 512:])
    assert not torch.allclose(multi[:, :512], single[:, :512])  # the region itself: the pyramid


def test_scale_selection_takes_the_two_scales_around_the_one_of_a_224_pixel_roi():
    factors = torch.tensor([1 / 3, 2 / 3, 1.0, 4 / 3, 5 / 3])  # 200..1000 for a 600-px image
    boxes = torch.tensor([[0.0, 0, 224, 224],    # 224 px at factor 1: between 2/3 and 1
                          [0.0, 0, 150, 150],    # 224 px at factor 1.49: 4/3 and 5/3
                          [0.0, 0, 100, 100],    # would need 2.24: the two largest
                          [0.0, 0, 600, 900]])   # would need 0.30: the two smallest
    lower, upper = select_adjacent_scales(boxes, factors, 224)
    assert lower.tolist() == [1, 3, 3, 0] and upper.tolist() == [2, 4, 4, 1]
    lower, upper = select_adjacent_scales(boxes, factors[:1], 224)
    assert lower.tolist() == upper.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("opts, message", [
    (["MODEL.PAPER_IMPROVEMENTS.TEST_SCALES", "[200, 0]"], "distinct positive"),
    (["MODEL.PAPER_IMPROVEMENTS.BOX_VOTE_THRESH", "1.5"], r"\(0, 1\]"),
    (["MODEL.META_ARCHITECTURE", "PaperRCNN", "MODEL.PAPER_IMPROVEMENTS.PYRAMID_MAX_SIZE", "-1"],
     r"PYRAMID_MAX_SIZE must be >= 0 \(0: no cap\)"),
    (["MODEL.PAPER_IMPROVEMENTS.TEST_SCALES", "[200]", "MODEL.META_ARCHITECTURE",
      "GeneralizedRCNN"], "META_ARCHITECTURE PaperRCNN"),
])
def test_bad_improvement_settings_fail_at_build(opts, message):
    with pytest.raises(ValueError, match=message):
        detector("MODEL.META_ARCHITECTURE", "PaperRCNN", "MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT",
                 "True", *opts)


@pytest.mark.parametrize("improvement", ["BOX_REFINEMENT", "GLOBAL_CONTEXT"])
def test_improvements_of_the_c4_head_are_refused_with_another_head(improvement):
    """VGG-16's StandardROIHeads has no such improvement: refused, not silently ignored."""
    config = str(Path(demo_config_file()).parent / "Base-PaperRCNN-VGG16.yaml")
    cfg = get_detection_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
                                     f"MODEL.PAPER_IMPROVEMENTS.{improvement}", "True"])
    with pytest.raises(ValueError, match="ROI_HEADS.NAME PaperRes5ROIHeads"):
        build_model(cfg)


def test_test_scales_are_sorted_and_checked():
    assert check_test_scales([1000, 200, 600]) == (200, 600, 1000)
    with pytest.raises(ValueError, match="distinct"):
        check_test_scales([600, 600])
