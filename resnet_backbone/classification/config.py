"""Configuration of ``tools/train_cls.py``: an fvcore ``CfgNode`` (yacs with ``_BASE_`` files,
the base of detectron2's) with every knob of the paper's two classification recipes (Sec. 3.4
ImageNet, Sec. 4.2 CIFAR-10).

The defaults are the *embedded demo*: a CIFAR-style ResNet-20 on a small built-in synthetic
dataset that trains on a CPU in about a minute. The YAML files under
``configs/classification/`` set the paper's recipes (``_BASE_`` is supported).
"""
from typing import Sequence

from fvcore.common.config import CfgNode as CN

from ..config_files import check_config_file
from ..fast import DTYPES
from ..models import list_models

RECIPES = ("cifar", "imagenet")
BACKENDS = ("cpu", "gpu")
DATASETS = ("synthetic", "cifar10", "imagenet")
FORMATS = ("folder", "shards")
SCHEDULERS = ("step", "plateau")
EVAL_MODES = ("center", "ten_crop", "multi_scale")
AMP_MODES = ("", *DTYPES)  # "" and "fp32": no autocast
MEAN_MODES = ("pixel", "channel")


def get_cls_cfg() -> CN:
    """A fresh copy of the defaults (the embedded demo)."""
    _C = CN()
    _C.VERSION = 2  # kept: configs and checkpoints written by earlier versions set it
    _C.MODEL = CN()
    _C.MODEL.NAME = "cifar_resnet20"  # any name of resnet_backbone.list_models()
    _C.MODEL.NUM_CLASSES = 10
    _C.MODEL.SHORTCUT = ""  # "" = the model's default (A for CIFAR nets, B for ImageNet); A|B|C
    _C.MODEL.NORM = "BN"  # BN (paper), SyncBN (multi-GPU), naiveSyncBN (multi-process on CPU)
    _C.MODEL.STRIDE_IN_1X1 = True  # bottleneck stride in the first 1x1 conv (the paper's models)
    _C.MODEL.WEIGHTS = ""  # a checkpoint to start from / to evaluate with --eval-only
    _C.MODEL.DEVICE = ""  # "" = cuda when available, else cpu

    _C.INPUT = CN()
    _C.INPUT.RECIPE = "cifar"  # cifar: pad+crop+flip (Sec. 4.2); imagenet: Sec. 3.4 augmentation
    _C.INPUT.MEAN = "pixel"  # pixel: per-pixel mean image of the training set (paper); channel
    _C.INPUT.PIXEL_MEAN = [123.675, 116.28, 103.53]  # RGB, used when INPUT.MEAN is "channel"
    _C.INPUT.PIXEL_STD = [1.0, 1.0, 1.0]  # the paper only subtracts the mean (0..255 inputs)
    _C.INPUT.MEAN_IMAGE_MAX_IMAGES = 10000  # ImageNet: images averaged for the mean image
    _C.INPUT.CIFAR_PAD = 4  # Sec. 4.2: 4 pixels padded on each side, then a random 32x32 crop
    _C.INPUT.TRAIN_SCALE = [256, 480]  # Sec. 3.4: shorter side sampled uniformly in [256, 480]
    _C.INPUT.CROP_SIZE = 224  # Sec. 3.4: random 224x224 crop
    _C.INPUT.COLOR_PCA_STD = 0.1  # AlexNet PCA colour augmentation (sigma 0.1); 0 disables
    _C.INPUT.FLIP = True  # random horizontal flip (both recipes)

    _C.DATASETS = CN()
    _C.DATASETS.NAME = "synthetic"  # synthetic | cifar10 (python batches) | imagenet (folders)
    _C.DATASETS.ROOT = ""  # cifar10: folder of data_batch_1..5/test_batch; imagenet: train/ val/
    # imagenet: folder (train/ val/ class folders) | shards (DATASETS.ROOT: a folder or URL prefix
    # holding the tar shards and train.json / val.json that resnet-make-shards writes)
    _C.DATASETS.FORMAT = "folder"
    _C.DATASETS.VAL_HOLDOUT = 0  # CIFAR: hold out this many training images as val (5000: 45k/5k)
    _C.DATASETS.SYNTHETIC = CN()
    _C.DATASETS.SYNTHETIC.NUM_TRAIN = 5000
    _C.DATASETS.SYNTHETIC.NUM_TEST = 1000
    _C.DATASETS.SYNTHETIC.NUM_CLASSES = 10
    _C.DATASETS.SYNTHETIC.IMAGE_SIZE = 32
    _C.DATASETS.SYNTHETIC.SEED = 0

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 2
    _C.DATALOADER.SKIP_CORRUPT = False  # True: skip (and count) unreadable images; False: stop
    # True: the CIFAR training set held on the training device as one tensor, the augmentation done
    # there by tensor ops on each batch, no DataLoader workers (classification.device_data); the
    # same batches as the DataLoader path. INPUT.RECIPE cifar only.
    _C.DATALOADER.ON_DEVICE = False
    # cpu: the workers decode and augment (PIL); gpu: the workers read the files' bytes, the JPEG
    # decode (nvJPEG on CUDA) and the augmentation run on MODEL.DEVICE (classification.device_decode;
    # on a CPU device, torchvision's decoder). INPUT.RECIPE imagenet on an image folder only.
    _C.DATALOADER.BACKEND = "cpu"
    # DATASETS.FORMAT shards: records in each reader's shuffle buffer (webdataset's); each holds
    # one encoded image (ImageNet: ~110 kB), in each DataLoader worker
    _C.DATALOADER.SHUFFLE_BUFFER = 1000

    _C.SOLVER = CN()
    _C.SOLVER.IMS_PER_BATCH = 64  # global batch; each of N processes gets IMS_PER_BATCH / N
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.WEIGHT_DECAY = 0.0001
    _C.SOLVER.MAX_ITER = 400
    _C.SOLVER.LR_SCHEDULER = "step"  # step: /GAMMA at STEPS; plateau: /GAMMA when val error stalls
    _C.SOLVER.STEPS = (200, 300)
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.PLATEAU_PATIENCE = 5  # evaluations without improvement before dividing the lr
    _C.SOLVER.PLATEAU_THRESHOLD = 0.001  # an improvement is a drop of val error by more than this
    _C.SOLVER.WARMUP_LR = 0.0  # > 0: ResNet-110 warm-up (Sec. 4.2: 0.01) until train error < ...
    _C.SOLVER.WARMUP_UNTIL_TRAIN_ERROR = 0.8  # ... this (80%), measured over WARMUP_WINDOW iters
    _C.SOLVER.WARMUP_WINDOW = 20
    _C.SOLVER.WARMUP_MAX_ITER = 2000  # end the warm-up here at the latest
    _C.SOLVER.CHECKPOINT_PERIOD = 100
    _C.SOLVER.KEEP_LAST = 3  # periodic checkpoints kept (model_final.pth, model_best.pth too)
    _C.SOLVER.AMP = ""  # "" or fp32 (no autocast) | bf16 | fp16 (CUDA); resnet_backbone.fast
    _C.SOLVER.CHANNELS_LAST = False
    _C.SOLVER.COMPILE = False  # torch.compile the model

    _C.TEST = CN()
    _C.TEST.EVAL_PERIOD = 100  # validation during training (curves, plateau schedule, best)
    _C.TEST.EVAL_MODE = "center"  # view used during training (Fig. 4: center crops)
    _C.TEST.FINAL_MODES = ["center"]  # after training and with --eval-only: center|ten_crop|multi_scale
    _C.TEST.RESIZE = 0  # shorter side before center/10-crop (ImageNet 256); 0: keep the image
    _C.TEST.CROP_SIZE = 0  # crop for center/10-crop (ImageNet 224); 0: the whole image
    _C.TEST.SCALES = [224, 256, 384, 480, 640]  # multi-scale fully-convolutional test
    _C.TEST.MULTI_SCALE_FLIP = True  # also average the flipped image at every scale
    _C.TEST.IMS_PER_BATCH = 100

    _C.LOG_PERIOD = 20
    _C.PROGRESS_BAR = True
    _C.SEED = 0
    _C.OUTPUT_DIR = "./output/cls_demo"
    _C.DIST_TIMEOUT_S = 1800  # a collective waiting this long (a dead worker) stops the job
    _C.CUDNN_BENCHMARK = False  # torch.backends.cudnn.benchmark (fixed-size inputs: faster)
    return _C.clone()


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not valid; valid choices: "
                         f"{', '.join(repr(c) for c in choices)}")


def check_cls_cfg(cfg: CN, world_size: int = 1) -> None:
    """Reject bad values with a message naming the key and the valid choices."""
    _choice("MODEL.NAME", cfg.MODEL.NAME, list_models())
    _choice("INPUT.RECIPE", cfg.INPUT.RECIPE, RECIPES)
    _choice("INPUT.MEAN", cfg.INPUT.MEAN, MEAN_MODES)
    _choice("DATASETS.NAME", cfg.DATASETS.NAME, DATASETS)
    _choice("SOLVER.LR_SCHEDULER", cfg.SOLVER.LR_SCHEDULER, SCHEDULERS)
    _choice("SOLVER.AMP", cfg.SOLVER.AMP, AMP_MODES)
    _choice("TEST.EVAL_MODE", cfg.TEST.EVAL_MODE, EVAL_MODES)
    for mode in cfg.TEST.FINAL_MODES:
        _choice("TEST.FINAL_MODES entry", mode, EVAL_MODES)
    if cfg.MODEL.SHORTCUT:
        _choice("MODEL.SHORTCUT", cfg.MODEL.SHORTCUT, ("A", "B", "C"))
    if cfg.DATASETS.NAME != "synthetic" and not cfg.DATASETS.ROOT:
        raise ValueError(f"DATASETS.ROOT is empty; set it to the {cfg.DATASETS.NAME} folder")
    batch = cfg.SOLVER.IMS_PER_BATCH
    if batch <= 0 or batch % world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({batch}) must be a positive multiple of the "
                         f"number of processes ({world_size})")
    if cfg.SOLVER.MAX_ITER <= 0 or cfg.SOLVER.CHECKPOINT_PERIOD <= 0 or cfg.TEST.EVAL_PERIOD <= 0:
        raise ValueError("SOLVER.MAX_ITER, SOLVER.CHECKPOINT_PERIOD and TEST.EVAL_PERIOD must be > 0")
    if list(cfg.SOLVER.STEPS) != sorted(cfg.SOLVER.STEPS):
        raise ValueError(f"SOLVER.STEPS must be increasing; got {list(cfg.SOLVER.STEPS)}")
    lo, hi = cfg.INPUT.TRAIN_SCALE
    if not 0 < lo <= hi or cfg.INPUT.CROP_SIZE > lo:
        raise ValueError(f"INPUT.TRAIN_SCALE {[lo, hi]} must satisfy 0 < min <= max and "
                         f"min >= INPUT.CROP_SIZE ({cfg.INPUT.CROP_SIZE})")
    if cfg.SOLVER.KEEP_LAST < 1:
        raise ValueError("SOLVER.KEEP_LAST must be >= 1")
    _choice("DATALOADER.BACKEND", cfg.DATALOADER.BACKEND, BACKENDS)
    _choice("DATASETS.FORMAT", cfg.DATASETS.FORMAT, FORMATS)
    if cfg.DATASETS.FORMAT == "shards" and cfg.DATASETS.NAME != "imagenet":
        raise ValueError("DATASETS.FORMAT shards reads ImageNet-style tar shards (resnet-make-shards): "
                         "it takes DATASETS.NAME imagenet; set DATASETS.FORMAT folder")
    if cfg.DATALOADER.SHUFFLE_BUFFER < 1:
        raise ValueError(f"DATALOADER.SHUFFLE_BUFFER must be >= 1 (1: no shuffling); got "
                         f"{cfg.DATALOADER.SHUFFLE_BUFFER}")
    if cfg.DATALOADER.BACKEND == "gpu" and (cfg.INPUT.RECIPE != "imagenet" or cfg.DATASETS.NAME != "imagenet"):
        raise ValueError("DATALOADER.BACKEND gpu decodes JPEG files on the device: it takes "
                         "DATASETS.NAME imagenet (an image folder or its shards) with INPUT.RECIPE "
                         "imagenet; set DATALOADER.BACKEND cpu for images held in memory")
    if cfg.DATALOADER.ON_DEVICE and (cfg.INPUT.RECIPE != "cifar" or cfg.DATASETS.NAME == "imagenet"):
        raise ValueError("DATALOADER.ON_DEVICE True holds a training set in memory on the device: "
                         "it takes INPUT.RECIPE cifar with DATASETS.NAME cifar10 or synthetic; set "
                         "DATALOADER.ON_DEVICE False for an image folder")


def load_cls_cfg(config_file: str, opts: Sequence[str], world_size: int = 1) -> CN:
    """The checked config of a ``train_cls`` run: defaults (the embedded demo), the YAML
    (``""``: none), then ``KEY VALUE`` overrides. Creates nothing (``train_cls`` and
    ``run_seeds --print-commands`` both read it)."""
    cfg = get_cls_cfg()
    try:
        if config_file:
            check_config_file(config_file)  # the file and its _BASE_ chain: one clear line
            cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
    except (AssertionError, KeyError) as e:  # yacs reports unknown keys / odd lists this way
        text = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise ValueError(f"{text} (overrides are KEY VALUE pairs; the keys and their meaning: "
                         "resnet_backbone/classification/config.py)") from None
    check_cls_cfg(cfg, world_size)
    return cfg


def trained_image_size(cfg: CN) -> int:
    """The side of the square images a config trains on: the synthetic images' size, CIFAR's 32,
    or ImageNet's crop (an exported or served classifier takes them by default)."""
    if cfg.DATASETS.NAME == "synthetic":
        return cfg.DATASETS.SYNTHETIC.IMAGE_SIZE
    return 32 if cfg.INPUT.RECIPE == "cifar" else cfg.INPUT.CROP_SIZE


def cfg_from_checkpoint(state) -> CN:
    """The config a checkpoint of ``tools/train_cls.py`` was trained with (its ``cfg`` entry)."""
    if not isinstance(state, dict) or "cfg" not in state:
        raise ValueError("the checkpoint has no 'cfg' entry; it was not written by tools/train_cls.py "
                         "(give --config-file with the matching config)")
    cfg = get_cls_cfg()
    cfg.merge_from_other_cfg(CN.load_cfg(state["cfg"]))
    return cfg
