"""The appendix's detection improvements (Table 9): box refinement, global context, multi-scale
testing. Their identities with the baseline, their building blocks, and their configuration
errors; the train / evaluate runs are in tests/cli/test_train_det.py."""
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

from resnet_backbone.detection import get_detection_cfg
from resnet_backbone.detection.box_refinement import box_voting, top_class_boxes
from resnet_backbone.detection.demo import demo_config_file
from resnet_backbone.detection.multiscale import check_test_scales, select_adjacent_scales

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


def test_box_refinement_changes_the_detections_of_a_regressing_head(images):
    baseline = detector()
    refined = same_weights(baseline, "MODEL.PAPER_IMPROVEMENTS.BOX_REFINEMENT", "True")
    ours, theirs = detections(refined, images), detections(baseline, images)
    assert all(len(d) > 0 and d.pred_boxes.tensor.isfinite().all() for d in ours)
    assert not all(len(a) == len(b) and torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
                   for a, b in zip(ours, theirs))


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


def test_multiscale_testing_pools_from_the_pyramid(images):
    single = detector()
    multi = same_weights(single, "MODEL.META_ARCHITECTURE", "PaperRCNN",
                         "MODEL.PAPER_IMPROVEMENTS.TEST_SCALES", "[256, 64, 128]")
    assert multi.test_scales == (64, 128, 256)  # ascending
    ours = detections(multi, images)
    assert all(len(d) > 0 and d.pred_boxes.tensor.isfinite().all() for d in ours)
    assert not torch.equal(ours[0].scores, detections(single, images)[0].scores)


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
