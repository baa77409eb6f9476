"""Pre-trained backbone weights must fit the backbone, and FrozenBN needs its statistics.

* ``apply_weights_meta``: a backbone exported by ``tools/export_backbone.py`` (its ``meta``), a
  checkpoint of ``tools/train_cls.py`` (its ``cfg``) or a name of the weights registry (its
  entry) says how the weights were trained. What describes the weights (shortcut option, stride
  placement, residual or plain, input format and pixel mean / std; for VGG-16 entries the
  pixels only) is applied to the config, each with a log line, unless the command line set it
  to something else: that, and a depth that differs, stop the job with the exact override.
* ``check_evaluated_predictor``: ``--eval-only`` evaluates a trained detector, so its box
  predictor must come from the weights file; one left at random values (a backbone-only file,
  another number of classes, or a baseline checkpoint under ``GLOBAL_CONTEXT``, whose predictor
  has twice the inputs) would give meaningless numbers, so the job stops and says why.
* ``check_frozen_norms``: a backbone whose norms are FrozenBN (``NORM FrozenBN``, or stages
  frozen by ``FREEZE_AT``) normalises with the statistics of its weights. With no weights, or a
  file that leaves backbone weights or statistics missing, it would normalise nothing (loss 1e6
  and NaN within iterations), so the job stops and says what to do instead.
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

from ..checkpoint import CheckpointError, group_keys, load_checkpoint_file
from ..checkpoint_meta import backbone_meta
from ..models import model_spec
from ..weights_registry import is_weights_name, weights_entry

#: The config keys of the input's pixels -> the weights' ``meta`` keys.
_PIXEL_KEYS = {"INPUT.FORMAT": "input_format", "MODEL.PIXEL_MEAN": "pixel_mean",
               "MODEL.PIXEL_STD": "pixel_std"}
VGG16_BACKBONE = "build_vgg16_backbone"
#: Backbone weights of a detector: the backbone and, in the C4 design, the res5 head.
BACKBONE_PREFIXES = ("backbone.", "roi_heads.res5.")
#: FrozenBN statistics from fewer batches than this are likely far from converged.
FEW_BN_BATCHES = 100
FROM_SCRATCH = ("train from scratch with MODEL.PAPER_RESNET.NORM BN (or GN, SyncBN) and "
                "MODEL.PAPER_RESNET.FREEZE_AT 0, or give pre-trained weights in MODEL.WEIGHTS")


def weights_meta(path: str) -> Optional[Dict]:
    """What a weights file of this package, or a name of the weights registry
    (``resnet_backbone.weights_registry``), says about its backbone (None for other files: MSRA,
    torchvision, detectron2 checkpoints given by path)."""
    name = (path or "").split("?", 1)[0]
    if is_weights_name(name) and not os.path.isfile(name):
        entry = weights_entry(name)
        spec = model_spec(entry.model)
        return {**entry.meta(), "depth": spec.depth, "cifar": spec.cifar,
                "residual": spec.residual}
    if not path or "://" in path or not path.endswith((".pth", ".pt", ".pkl")):
        return None
    try:
        state = load_checkpoint_file(path)
    except CheckpointError:
        return None  # the checkpointer reports it when it loads the file
    if not isinstance(state, dict):
        return None
    if isinstance(state.get("meta"), dict):
        return state["meta"]
    if "cfg" in state and "pixel_mean" in state:
        return backbone_meta(state)
    return None


def _explicit(key: str, opts: Sequence[str]) -> bool:
    return key in list(opts)[::2]


def apply_weights_meta(cfg, opts: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
    """Make the (unfrozen) config fit the backbone in ``cfg.MODEL.WEIGHTS``. Returns what to
    log once logging is set up: (what it set, warnings). ``opts``: the command line's ``KEY
    VALUE`` overrides."""
    meta = weights_meta(cfg.MODEL.WEIGHTS)
    if meta is None:
        return [], []
    source = f"the weights {cfg.MODEL.WEIGHTS} ({meta.get('model_name', 'a ResNet')})"
    if meta.get("model_name") == "vgg16":  # a named VGG-16 entry: its pixels only
        if cfg.MODEL.BACKBONE.NAME != VGG16_BACKBONE:
            raise ValueError(f"{source} are VGG-16 weights, the config's MODEL.BACKBONE.NAME is "
                             f"{cfg.MODEL.BACKBONE.NAME}: use a VGG-16 config, or ResNet weights")
        return _apply(cfg, opts, source, {k: meta[v] for k, v in _PIXEL_KEYS.items()}), []
    if not cfg.MODEL.BACKBONE.NAME.startswith("build_paper_resnet"):
        return [], []
    if meta.get("cifar"):
        raise ValueError(f"{source} are a CIFAR-10 network (3 stages on 32x32 images), not a "
                         "detection backbone; export an ImageNet ResNet")
    c = cfg.MODEL.PAPER_RESNET
    if meta.get("depth") != c.DEPTH:
        raise ValueError(f"{source} are ResNet-{meta.get('depth')}, the config says "
                         f"MODEL.PAPER_RESNET.DEPTH {c.DEPTH}: set MODEL.PAPER_RESNET.DEPTH "
                         f"{meta.get('depth')}, or use other weights")
    if c.NORM == "FrozenBN" and meta.get("norm") == "GN":
        raise ValueError(f"{source} were trained with GN, which has no statistics for FrozenBN: "
                         "set MODEL.PAPER_RESNET.NORM GN")
    wanted = {"MODEL.PAPER_RESNET.RESIDUAL": meta.get("residual"),
              "MODEL.PAPER_RESNET.STRIDE_IN_1X1": meta.get("stride_in_1x1"),
              **{k: meta.get(v) for k, v in _PIXEL_KEYS.items()}}
    if meta.get("residual"):
        wanted["MODEL.PAPER_RESNET.SHORTCUT"] = meta.get("shortcut")
    applied = _apply(cfg, opts, source, wanted)
    warnings = []
    batches = meta.get("bn_batches")
    if c.NORM == "FrozenBN" and batches is not None and batches < FEW_BN_BATCHES:
        warnings.append(f"The BN statistics of {source} come from only {batches} training "
                        "batches: FrozenBN fine-tuning with statistics so far from converged may "
                        "diverge (pre-train longer, or fine-tune with NORM BN).")
    return applied, warnings


def _apply(cfg, opts: Sequence[str], source: str, wanted: Dict) -> List[str]:
    """Set each ``wanted`` key (None: nothing known) unless the command line set it otherwise
    (then a ValueError with the override to use); one line per key set."""
    applied = []
    for key, value in wanted.items():
        if value is None:
            continue
        node, leaf = key.rsplit(".", 1)
        current = getattr(_node(cfg, node), leaf)
        if (list(current) == list(value)) if isinstance(value, list) else current == value:
            continue
        if _explicit(key, opts):
            raise ValueError(f"{source} were trained with {key.rsplit('.', 1)[1]} {value!r}, the "
                             f"command line sets {key} {current!r}: set {key} {value!r} (or "
                             "leave it out: it is taken from the weights)")
        setattr(_node(cfg, node), leaf, value)
        applied.append(f"Set {key} {value!r} (from {source})")
    return applied


def _node(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


#: The box predictor's parameters in a detectron2 detector (two-stage: ROI heads).
PREDICTOR_PREFIX = "roi_heads.box_predictor."


def check_evaluated_predictor(loaded: Optional[Dict], what: str = "--eval-only") -> None:
    """Stop (ValueError naming the fix) before ``--eval-only`` evaluates (or a predictor, an
    export: ``what``, e.g. "--weights", runs) a box predictor that ``loaded`` (the
    checkpointer's record; None: no weights) left at its random initial values."""
    if loaded is None:
        raise ValueError("--eval-only with MODEL.WEIGHTS empty would evaluate a random detector: "
                         "give the trained model, e.g. MODEL.WEIGHTS output/model_final.pth")
    missing = [k for k in loaded["missing"] if k.startswith(PREDICTOR_PREFIX)]
    if missing:
        raise ValueError(f"{what}: {loaded['path']} has no weights of this model's box "
                         f"predictor ({', '.join(group_keys(missing)[:2])}: absent, or of another "
                         "shape), which would be used at random values. Give a "
                         "checkpoint of this detector: the same number of classes, and trained "
                         "with MODEL.PAPER_IMPROVEMENTS.GLOBAL_CONTEXT if the config sets it")


def check_backbone_shapes(loaded: Optional[Dict], key: str = "MODEL.WEIGHTS") -> None:
    """Stop (``CheckpointError``) when ``loaded`` (the checkpointer's record) has backbone
    weights of other shapes than the model's: weights of another network (R-50 into an R-18:
    the 3x3 convolutions of one width load, the rest do not) would train a half-loaded backbone
    with nothing but a table of warnings to say so. A class-specific predictor of another shape
    is normal when fine-tuning, and left to the checkpointer's table."""
    bad = [m for m in (loaded or {}).get("mismatched", []) if m[0].startswith(BACKBONE_PREFIXES)]
    if bad:
        shown = "; ".join(f"{k}: {list(model)} in the model, {list(ckpt)} in the file"
                          for k, model, ckpt in bad[:2])
        raise CheckpointError(
            f"{key} {loaded['path']} does not fit this backbone: {len(bad)} of its backbone "
            f"weights have other shapes ({shown}), so it holds another network's weights. Set "
            "MODEL.PAPER_RESNET (DEPTH, SHORTCUT, STRIDE_IN_1X1) to the network the weights "
            f"are of, or give weights of this one in {key}")


def check_frozen_norms(model, loaded: Optional[Dict]) -> None:
    """Stop (ValueError naming the fix) if the backbone has FrozenBN layers and ``loaded``, the
    checkpointer's record of what it loaded (None: nothing), leaves them without statistics or
    the backbone without weights."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    frozen = {name for name, m in model.named_modules()
              if type(m).__name__ == "FrozenBatchNorm2d" and name.startswith(BACKBONE_PREFIXES)}
    if not frozen:
        return
    if loaded is None:
        raise ValueError("MODEL.WEIGHTS is empty, but the backbone's norms are FrozenBN (NORM "
                         "FrozenBN, or stages frozen by FREEZE_AT): with random weights they "
                         "normalise nothing and the loss diverges within a few iterations; "
                         + FROM_SCRATCH)
    missing = set(loaded["missing"])
    # An affine-only BN (the MSRA caffe2 files) carries weight and bias, no statistics: the
    # layer's initial statistics (mean 0, variance 1 - eps) make it exactly that affine map.
    affine = {m for m in frozen if f"{m}.weight" not in missing and f"{m}.bias" not in missing}
    lacking = sorted(k for k in missing if k.startswith(BACKBONE_PREFIXES)
                     and not (k.rsplit(".", 1)[0] in affine and k.endswith(("running_mean", "running_var"))))
    if lacking:
        shown = ", ".join(group_keys(lacking)[:4])
        raise ValueError(f"{loaded['path']} does not provide {len(lacking)} of the backbone's "
                         f"weights and statistics ({shown}, ...), which fine-tuning with FrozenBN "
                         "needs: check MODEL.PAPER_RESNET (DEPTH, SHORTCUT, RESIDUAL, "
                         "STRIDE_IN_1X1) against the weights, or " + FROM_SCRATCH)
