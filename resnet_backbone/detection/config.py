"""``add_paper_resnet_config``: the config nodes of the Detectron2 plugin.

``MODEL.PAPER_RESNET`` configures ``build_paper_resnet`` / ``build_paper_resnet_fpn_backbone``
and the res5 of ``PaperRes5ROIHeads``; ``MODEL.VGG16`` configures ``build_vgg16_backbone`` and
the fc6/fc7 box head ``VGG16BoxHead``. Defaults are the paper's detection setting (appendix A).
``MODEL.PAPER_IMPROVEMENTS`` switches on the appendix's improvements of the C4 detector (Table 9:
box refinement, global context, multi-scale testing); all are off by default, so the baseline
configs of Tables 7 and 8 stay the baseline.
"""
from typing import Sequence

from detectron2.config import CfgNode as CN, get_cfg

from ..config_files import check_config_file


def _add_defaults(node: CN, defaults: dict) -> None:
    """Set the keys ``node`` does not have yet, so calling twice keeps the user's values."""
    for key, value in defaults.items():
        if key not in node:
            setattr(node, key, value)


def add_paper_resnet_config(cfg: CN) -> CN:
    """Add ``MODEL.PAPER_RESNET``, ``MODEL.VGG16``, ``MODEL.PAPER_IMPROVEMENTS`` and
    ``DATASETS.STRICT``, ``DATALOADER.SKIP_CORRUPT`` and ``LOG_PERIOD`` to a detectron2 config
    (idempotent)."""
    if "PAPER_RESNET" not in cfg.MODEL:
        cfg.MODEL.PAPER_RESNET = CN()
    _add_defaults(cfg.MODEL.PAPER_RESNET, dict(
        # Table 1 depth: 18, 34 (basic blocks), 50, 101, 152 (bottlenecks). Paper detector: 101.
        DEPTH=101,
        # Sec. 3.3 shortcut option: A (zero-padding), B (projection when shape changes), C (all
        # projections). The released models and the detector use B.
        SHORTCUT="B",
        # False builds the plain counterpart (no shortcuts), for the paper's plain-vs-residual study.
        RESIDUAL=True,
        # Bottleneck stride in the first 1x1 conv (paper / MSRA weights: True) or in the 3x3
        # (torchvision weights: False).
        STRIDE_IN_1X1=True,
        # FrozenBN: BN statistics from ImageNet, fixed while fine-tuning (appendix A).
        # Also BN, SyncBN, GN (and "" for none); train from scratch with BN/SyncBN/GN.
        NORM="FrozenBN",
        # 0: train all; 1: freeze the stem (conv1); k: stem and the first k-1 stages. The paper
        # does not say for ResNet; 2 (conv1 + conv2_x frozen) is detectron2's and Detectron's.
        FREEZE_AT=2,
        # Feature maps to output. C4 design: conv1..conv4_x shared by RPN and detector ("res4",
        # stride 16); FPN: ["res2", "res3", "res4", "res5"].
        OUT_FEATURES=["res4"],
        # 1 in the paper; 2 gives the dilated-C5 ("DC5") variant of later work (res5 stride 16).
        RES5_DILATION=1,
    ))
    if "VGG16" not in cfg.MODEL:
        cfg.MODEL.VGG16 = CN()
    _add_defaults(cfg.MODEL.VGG16, dict(
        # Conv blocks frozen: 2 (conv1_x, conv2_x), as Faster R-CNN fine-tunes conv3_1 and up.
        FREEZE_AT=2,
        # conv5_3: the stride-16, 512-channel map shared by RPN and detector (no pool5).
        OUT_FEATURES=["conv5_3"],
        # Round pooled sizes up, as Caffe (and so py-faster-rcnn's VGG-16) did.
        CEIL_MODE=True,
        # Box head fc6/fc7 width: 4096, as VGG-16's classifier (so its ImageNet weights load).
        FC_DIM=4096,
        # Dropout after fc6 and fc7 in training: 0.5, as VGG-16 and Faster R-CNN.
        DROPOUT=0.5,
    ))
    if "PAPER_IMPROVEMENTS" not in cfg.MODEL:
        cfg.MODEL.PAPER_IMPROVEMENTS = CN()
    _add_defaults(cfg.MODEL.PAPER_IMPROVEMENTS, dict(
        # Appendix "box refinement" (after Gidaris & Komodakis): at inference, pool a new feature
        # from each regressed box, predict a new score and box, merge these predictions with the
        # original ones, NMS on the union, then box voting. Needs ROI_HEADS.NAME
        # PaperRes5ROIHeads. Inference only: training is unchanged.
        BOX_REFINEMENT=False,
        # NMS IoU threshold on the union of original and refined predictions: 0.3 in the paper.
        REFINEMENT_NMS_THRESH=0.3,
        # Box voting after that NMS: each kept box becomes the score-weighted mean of the union's
        # boxes of its class that overlap it by at least BOX_VOTE_THRESH IoU. The paper does not
        # give the threshold; 0.8 is Detectron's (TEST.BBOX_VOTE.VOTE_TH) implementation of [6].
        BOX_VOTING=True,
        BOX_VOTE_THRESH=0.8,
        # Appendix "global context": the whole image is pooled as one RoI (a single-level spatial
        # pyramid), passed through the same res5 and pooling, and concatenated with every
        # region's feature before the two sibling layers; trained end to end. Changes the box
        # predictor's input width (2x), so it is a different model from the baseline.
        GLOBAL_CONTEXT=False,
        # Appendix "multi-scale testing": the shorter sides of the image pyramid on which the
        # Fast R-CNN step runs, e.g. [200, 400, 600, 800, 1000] (the paper); the RPN stays at
        # INPUT.MIN_SIZE_TEST. Empty: single-scale testing. Needs META_ARCHITECTURE "PaperRCNN"
        # and ROI_HEADS.NAME "PaperRes5ROIHeads".
        TEST_SCALES=[],
        # Each RoI is pooled at the two adjacent pyramid scales around the one where it is
        # closest to SCALE_SELECTION_SIZE^2 pixels (224: "Object Detection Networks on
        # Convolutional Feature Maps", after SPPnet), and the two are merged by maxout.
        SCALE_SELECTION_SIZE=224,
        # Where the two scales are merged. True (the paper: "RoI pooling and subsequent layers
        # are performed on the feature maps of these two scales, which are merged by maxout"):
        # each RoI goes through RoI pooling, res5 and average pooling at both scales, and the
        # element-wise max of the two region features goes to the sibling layers. False: the
        # max of the two RoI-pooled res4 maps, then res5 once (half the res5 cost; BENCHMARKS.md
        # "Appendix cost" measures both).
        MAXOUT_AFTER_RES5=True,
        # The longest side of a pyramid level, in pixels (0: no cap). The paper gives shorter
        # sides only; 4000 is Detectron's TEST.BBOX_AUG.MAX_SIZE. The paper's pyramid of a
        # 600 x 1000 input peaks at 1000 x 1667, far below it: the cap only bounds the memory of
        # very elongated images (a 200 x 1000 input's 1000-pixel level would be 1000 x 5000).
        PYRAMID_MAX_SIZE=4000,
    ))
    # Datasets are checked before a job (resnet_backbone.detection.validation): False skips
    # (and counts) the bad annotations of a training set; True makes any problem an error.
    _add_defaults(cfg.DATASETS, dict(STRICT=False))
    # The same check decodes every image's header first: a missing or unreadable image of a
    # training set is an error before step one (False), or True: the image is left out of
    # training (and named); as classification's DATALOADER.SKIP_CORRUPT. A test set's: always
    # an error (test sets are never changed).
    _add_defaults(cfg.DATALOADER, dict(SKIP_CORRUPT=False))
    if "DIST_TIMEOUT_S" not in cfg:
        # Seconds a collective waits (a machine that does not join, a dead worker) before the
        # job stops with an error naming it; as classification's DIST_TIMEOUT_S. A LazyConfig
        # sets train.dist_timeout_s.
        cfg.DIST_TIMEOUT_S = 1800
    if "LOG_PERIOD" not in cfg:
        # Iterations between two writes of the console line, metrics.json and TensorBoard
        # (detectron2's DefaultTrainer: 20); each write gives the median of the iterations
        # since the last one, so LOG_PERIOD 1 records every iteration's time as it was.
        cfg.LOG_PERIOD = 20
    return cfg


def check_paper_improvements(cfg: CN) -> None:
    """ValueError naming the fix when ``MODEL.PAPER_IMPROVEMENTS`` asks for something the model
    would silently not do: the improvements live in the C4 head ``PaperRes5ROIHeads``, and
    multi-scale testing in the ``PaperRCNN`` meta-architecture. Run by the backbone builders, so
    every ``build_model`` of a config with this package's backbones checks it."""
    improvements = cfg.MODEL.get("PAPER_IMPROVEMENTS")
    if improvements is None:
        return
    wanted = [name for name in ("BOX_REFINEMENT", "GLOBAL_CONTEXT", "TEST_SCALES")
              if improvements.get(name)]
    if wanted and cfg.MODEL.ROI_HEADS.NAME != "PaperRes5ROIHeads":
        raise ValueError(f"MODEL.PAPER_IMPROVEMENTS {', '.join(wanted)} need MODEL.ROI_HEADS.NAME "
                         f"PaperRes5ROIHeads (the paper's C4 head); the config has "
                         f"{cfg.MODEL.ROI_HEADS.NAME}")
    if improvements.get("TEST_SCALES") and cfg.MODEL.META_ARCHITECTURE != "PaperRCNN":
        raise ValueError("MODEL.PAPER_IMPROVEMENTS.TEST_SCALES (multi-scale testing) needs "
                         "MODEL.META_ARCHITECTURE PaperRCNN; the config has "
                         f"{cfg.MODEL.META_ARCHITECTURE}")


def get_detection_cfg(config_file: str = "", opts: Sequence[str] = ()) -> CN:
    """detectron2's default config + ``add_paper_resnet_config``, then a YAML file (e.g. one of
    ``configs/detection/``; it and its ``_BASE_`` chain checked first,
    ``resnet_backbone.config_files``) and ``KEY VALUE`` overrides, in that order."""
    cfg = add_paper_resnet_config(get_cfg())
    if config_file:
        # the file and its _BASE_ chain (a mistake is one clear line, not a yaml traceback);
        # detectron2 allows YAML tags such as !!python/tuple, so the check does too
        check_config_file(config_file, allow_unsafe=True)
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    return cfg
