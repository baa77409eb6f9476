"""Weight conversion between the paper's networks (our names) and the checkpoints users have.

Every function takes and returns a plain state dict (``name -> tensor or numpy array``) and
raises ``ValueError`` naming the keys it does not understand. Formats:

``paper``               our ResNet names = detectron2's ResNet names: ``stem.conv1.weight``,
                        ``stem.conv1.norm.*``, ``res2.0.conv1.weight``, ``res2.0.shortcut.norm.*``,
                        ``linear.*`` (detectron2's ``ResNet`` calls its classifier ``linear`` too).
``paper_vgg16``         our VGG-16 names: ``conv1_1`` .. ``conv5_3``, ``head.fc6``, ``head.fc7``, ``fc8``.
``torchvision_resnet``  ``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.bn1``,
                        ``layer1.0.downsample.0/.1``, ``fc``.  torchvision puts the bottleneck's
                        stride in the 3x3 convolution: load it into ``stride_in_1x1=False`` models.
``torchvision_vgg16``   ``features.N`` and ``classifier.0/3/6``.
``caffe2_resnet``       MSRA / Detectron blob names as in ``R-50.pkl``: ``conv1_w``,
                        ``res_conv1_bn_s``, ``res2_0_branch2a_w``, ``res2_0_branch1_bn_b``,
                        ``fc1000_w`` (stride in the 1x1 convolution: the paper's placement).

detectron2: a detectron2 ResNet state dict has exactly our names, so a classifier/backbone file
needs no renaming. Detector checkpoints nest it (``backbone.`` for C4, ``backbone.bottom_up.``
with FPN, and the C4 res5 under ``roi_heads.res5.``): ``detectron2_resnet_to_paper`` and
``paper_to_detectron2_resnet`` only strip / add those prefixes.

Caffe2 batch norm: the MSRA files store each BN folded into an affine transform
``y = x * s + b`` (``_bn_s``, ``_bn_b``), without statistics. ``caffe2_resnet_to_paper`` gives
each norm layer ``weight = s``, ``bias = b``, ``running_mean = 0`` and ``running_var = 1 - eps``
(eps = 1e-5, the eps of ``nn.BatchNorm2d`` and detectron2's ``FrozenBatchNorm2d``), so that the
eval-mode BN ``(x - mean) / sqrt(var + eps) * weight + bias`` is exactly ``x * s + b``. (detectron2
fills ``running_var = 1`` instead, which scales every layer by ``1 / sqrt(1 + 1e-5)``.) Load such
weights into ``norm="FrozenBN"`` models or keep BN in eval mode: they carry no statistics to train
from. Files that also hold ``_bn_rm`` / ``_bn_riv`` (read as running mean / variance, as
detectron2 does) keep them. ``paper_to_caffe2_resnet`` folds each BN back into ``s``, ``b``.
"""
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from .models.vgg import VGG16_LAYOUT, vgg16_conv_names

StateDict = Dict[str, Any]

#: eps of ``nn.BatchNorm2d`` and detectron2's ``FrozenBatchNorm2d``.
BN_EPS = 1e-5

#: Values ``detect_format`` returns.
FORMATS = ("paper", "paper_vgg16", "torchvision_resnet", "torchvision_vgg16", "caffe2_resnet")

_BN_LEAVES = "weight|bias|running_mean|running_var|num_batches_tracked"
#: Every name a ResNet of ours (any depth, norm, shortcut option, plain or residual) can have.
_PAPER_RESNET_KEY = re.compile(
    rf"^(?:(?:stem\.conv1|res[2-5]\.\d+\.(?:conv[123]|shortcut))\.(?:weight|bias|norm\.(?:{_BN_LEAVES}))"
    r"|linear\.(?:weight|bias))$")


def _check_keys(sd: Mapping[str, Any], valid: Callable[[str], bool], what: str) -> None:
    bad = sorted(k for k in sd if not valid(k))
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ValueError(f"Not a {what} state dict: unknown key(s) {bad[:5]}{more}. "
                         f"Check the source format (see resnet_backbone.convert.detect_format).")


#: Placeholders of the module tables below: stage, block and layer numbers.
_FIELDS = {"s": r"\d", "b": r"\d+", "k": "[123]"}


def _rename(sd: Mapping[str, Any], modules: Sequence[Tuple[str, str, str]], what: str, *,
            reverse: bool = False, stage_offset: int = 0) -> StateDict:
    """Rename by a table of ``(source module, target module, leaf names regex)``; templates may
    hold ``{s}``, ``{b}``, ``{k}``, and ``{s}`` is shifted by ``stage_offset``. ``reverse`` reads
    the table the other way. A key no row matches is an error naming it."""
    rules = []
    for src, dst, leaves in modules:
        src, dst = (dst, src) if reverse else (src, dst)
        pattern = re.escape(src)
        for field, regex in _FIELDS.items():
            pattern = pattern.replace(re.escape(f"{{{field}}}"), f"(?P<{field}>{regex})")
        rules.append((re.compile(rf"{pattern}\.(?P<leaf>{leaves})"), dst))
    out, bad = {}, []
    for key, value in sd.items():
        for pattern, dst in rules:
            m = pattern.fullmatch(key)
            if m:
                fields = m.groupdict()
                if "s" in fields:
                    fields["s"] = int(fields["s"]) + stage_offset
                out[dst.format(**fields) + "." + fields["leaf"]] = value
                break
        else:
            bad.append(key)
    _check_keys({k: None for k in bad}, lambda _: False, what)
    return out


# ---------------------------------------------------------------- torchvision ResNet

#: (torchvision module, our module, its parameter / buffer names); torchvision's ``layer{s}``
#: is our ``res{s + 1}``.
_TV_RESNET_MODULES = [
    ("conv1", "stem.conv1", "weight"),
    ("bn1", "stem.conv1.norm", _BN_LEAVES),
    ("fc", "linear", "weight|bias"),
    ("layer{s}.{b}.conv{k}", "res{s}.{b}.conv{k}", "weight"),
    ("layer{s}.{b}.bn{k}", "res{s}.{b}.conv{k}.norm", _BN_LEAVES),
    ("layer{s}.{b}.downsample.0", "res{s}.{b}.shortcut", "weight"),
    ("layer{s}.{b}.downsample.1", "res{s}.{b}.shortcut.norm", _BN_LEAVES),
]


def torchvision_resnet_to_paper(sd: Mapping[str, Any]) -> StateDict:
    """torchvision ``resnet18`` .. ``resnet152`` names -> ours (``layerN`` -> ``res{N+1}``).

    Load the result into a model built with ``stride_in_1x1=False`` (torchvision's placement).
    """
    tv_key = re.compile(r"^(?!layer[^1-4]).*")  # stages layer1..layer4 only
    _check_keys(sd, tv_key.match, "torchvision ResNet (stages layer1..layer4)")
    return _rename(sd, _TV_RESNET_MODULES, "torchvision ResNet", stage_offset=1)


def paper_to_torchvision_resnet(sd: Mapping[str, Any]) -> StateDict:
    """Our ResNet names -> torchvision's. Only option-B ResNets with BN map onto torchvision's
    modules; a model trained with ``stride_in_1x1=True`` gives other outputs there."""
    _check_keys(sd, _PAPER_RESNET_KEY.match, "paper ResNet")
    return _rename(sd, _TV_RESNET_MODULES, "paper ResNet with BN (torchvision has no conv bias)",
                   reverse=True, stage_offset=-1)


# ---------------------------------------------------------------- caffe2 / MSRA ResNet

#: Our module -> MSRA / Detectron caffe2 blob prefix: a block's layers, the stem, the classifier.
_C2_BRANCH = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
#: caffe2 blob suffix -> our leaf name (BN blobs as MSRA writes them; GN as Detectron's GN models).
_C2_LEAVES = {"w": "weight", "b": "bias", "bn_s": "norm.weight", "bn_b": "norm.bias",
              "bn_rm": "norm.running_mean", "bn_riv": "norm.running_var",
              "gn_s": "norm.weight", "gn_b": "norm.bias"}
_C2_BLOB = re.compile(rf"(?P<module>.+?)_(?P<leaf>{'|'.join(_C2_LEAVES)})")
_C2_BLOCK = re.compile(rf"res(?P<s>\d)_(?P<b>\d+)_(?P<branch>{'|'.join(_C2_BRANCH.values())})")


def caffe2_name_to_paper(name: str) -> Optional[str]:
    """One MSRA / Detectron caffe2 blob name as our parameter name (None if it is not one of a
    ResNet's): ``conv1_w`` -> ``stem.conv1.weight``, ``res_conv1_bn_s`` ->
    ``stem.conv1.norm.weight``, ``res3_1_branch2b_bn_b`` -> ``res3.1.conv2.norm.bias``,
    ``res2_0_branch1_w`` -> ``res2.0.shortcut.weight``, ``fc1000_b`` -> ``linear.bias``.
    The same names as detectron2's caffe2 loader gives (a detection test checks it)."""
    blob = _C2_BLOB.fullmatch(name)
    if blob is None:
        return None
    module, leaf = blob["module"], _C2_LEAVES[blob["leaf"]]
    is_norm = leaf.startswith("norm.")
    if module == "conv1" and not is_norm or module == "res_conv1" and is_norm:
        return f"stem.conv1.{leaf}"
    if module == "fc1000" and not is_norm:
        return f"linear.{leaf}"
    block = _C2_BLOCK.fullmatch(module)
    if block is None:
        return None
    layer = {branch: ours for ours, branch in _C2_BRANCH.items()}[block["branch"]]
    return f"res{block['s']}.{block['b']}.{layer}.{leaf}"


def to_tensor(value: Any) -> torch.Tensor:
    """A CPU tensor from a tensor or numpy array (caffe2 files hold numpy arrays)."""
    return value.detach().cpu() if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def to_numpy(value: Any) -> np.ndarray:
    """A numpy array from a tensor or numpy array."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def caffe2_resnet_to_paper(blobs: Mapping[str, Any], eps: float = BN_EPS) -> StateDict:
    """MSRA / Detectron caffe2 blobs (numpy arrays) -> our names (torch tensors).

    Names are renamed by :func:`caffe2_name_to_paper`.
    Optimizer state (``*_momentum``) is dropped. Affine-only BN gets the statistics described in
    the module docstring (``running_mean = 0``, ``running_var = 1 - eps``).
    """
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    dotted = [k for k in blobs if "." in k]
    if dotted:
        raise ValueError(f"Not caffe2 blob names (they have no dots): {sorted(dotted)[:5]}")
    renamed = {old: caffe2_name_to_paper(old) for old in blobs}
    _check_keys(blobs, lambda k: renamed[k] is not None and bool(_PAPER_RESNET_KEY.match(renamed[k])),
                "caffe2 ResNet (MSRA R-50.pkl style)")
    out = {renamed[old]: to_tensor(value) for old, value in blobs.items()}
    for key in [k for k in out if k.endswith(".norm.weight")]:
        prefix, scale = key[: -len("weight")], out[key]
        if prefix + "bias" not in out:
            raise ValueError(f"caffe2 blobs have a BN scale for {prefix[:-1]} but no bias (_bn_b)")
        out.setdefault(prefix + "running_mean", torch.zeros_like(scale))
        out.setdefault(prefix + "running_var", torch.full_like(scale, 1.0 - eps))
    return out


def paper_to_caffe2_resnet(sd: Mapping[str, Any], eps: float = BN_EPS,
                           fold_bn: bool = True) -> StateDict:
    """Our ResNet names -> MSRA caffe2 blob names (numpy float32 arrays).

    ``fold_bn=True`` (the MSRA files' form) folds each BN in eval mode into ``_bn_s = weight /
    sqrt(running_var + eps)`` and ``_bn_b = bias - running_mean * _bn_s``, so the network computes
    the same function; ``fold_bn=False`` writes ``_bn_s``, ``_bn_b``, ``_bn_rm``, ``_bn_riv`` as
    they are. ``num_batches_tracked`` is dropped (caffe2 has none).
    """
    _check_keys(sd, _PAPER_RESNET_KEY.match, "paper ResNet")
    sd = {k: to_numpy(v) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    if fold_bn:
        for key in [k for k in sd if k.endswith(".norm.weight")]:
            p = key[: -len("weight")]
            if p + "running_var" not in sd:
                continue  # GN or already affine: nothing to fold
            scale = sd[key] / np.sqrt(sd.pop(p + "running_var") + eps)
            sd[p + "bias"] = sd[p + "bias"] - sd.pop(p + "running_mean") * scale
            sd[key] = scale
    leaves = {ours: c2 for c2, ours in _C2_LEAVES.items() if not c2.startswith("gn_")}
    out = {}
    for key, value in sd.items():
        if key.startswith("linear."):
            name = "fc1000_" + leaves[key.split(".", 1)[1]]
        else:
            module, leaf = re.match(r"^(stem\.conv1|res\d\.\d+\.\w+)\.(.+)$", key).groups()
            if module == "stem.conv1":
                base = "res_conv1" if leaf.startswith("norm.") else "conv1"
            else:
                stage, block, layer = module.split(".")
                base = f"{stage}_{block}_{_C2_BRANCH[layer]}"
            name = f"{base}_{leaves[leaf]}"
        out[name] = value.astype(np.float32, copy=False)
    return out


# ---------------------------------------------------------------- detectron2 prefixes

#: Where detectron2 detectors keep a ResNet: FPN, C4 / DC5 backbone, and the C4 res5 head.
D2_PREFIXES = ("backbone.bottom_up.", "backbone.")
D2_C4_RES5 = "roi_heads.res5."


def detectron2_resnet_to_paper(sd: Mapping[str, Any], prefix: str = "auto") -> StateDict:
    """A detectron2 detector's ResNet weights -> our names (a backbone state dict).

    Keeps the keys under ``prefix`` (``"auto"``: ``backbone.bottom_up.`` if present, else
    ``backbone.``; ``""``: a plain detectron2 ResNet, whose names are already ours) and the C4
    head's ``roi_heads.res5.*`` as ``res5.*``. The detection heads (RPN, box predictor, FPN) are
    not part of the ResNet and are left out; any other key under the prefix is an error.
    """
    if prefix == "auto":
        prefix = next((p for p in D2_PREFIXES if any(k.startswith(p) for k in sd)), "")
    out = {}
    for key, value in sd.items():
        if key.startswith(D2_C4_RES5):
            out["res5." + key[len(D2_C4_RES5):]] = value
        elif key.startswith(prefix):
            name = key[len(prefix):]
            if prefix == "backbone." and name.startswith(("fpn_", "top_block.")):
                continue  # FPN layers, saved under backbone. beside bottom_up.
            out[name] = value
    if not out:
        raise ValueError(f"No ResNet weights under prefix {prefix!r} (or {D2_C4_RES5!r}); keys "
                         f"start: {sorted(sd)[:5]}")
    _check_keys(out, _PAPER_RESNET_KEY.match, f"detectron2 ResNet (prefix {prefix!r})")
    return out


def paper_to_detectron2_resnet(sd: Mapping[str, Any], prefix: str = "",
                               keep_linear: bool = False) -> StateDict:
    """Our ResNet names -> detectron2's (identical), with ``prefix`` added.

    ``prefix=""`` is what a detectron2 ``MODEL.WEIGHTS`` initialisation file wants: with
    ``matching_heuristics`` detectron2 matches ``res5.*`` to ``roi_heads.res5.*`` (C4) and
    ``res2.*`` to ``backbone.bottom_up.res2.*`` (FPN) itself. The ImageNet classifier ``linear``
    is dropped unless ``keep_linear`` (detection backbones have none).
    """
    _check_keys(sd, _PAPER_RESNET_KEY.match, "paper ResNet")
    return {prefix + k: v for k, v in sd.items() if keep_linear or not k.startswith("linear.")}


# ---------------------------------------------------------------- torchvision VGG-16

def _vgg16_modules() -> List[Tuple[str, str, str]]:
    """(torchvision module, our module, leaves): ``features.N`` counts conv, ReLU and pool."""
    pairs, index, names = [], 0, iter(vgg16_conv_names())
    for _, num_convs, _ in VGG16_LAYOUT:
        for _ in range(num_convs):
            pairs.append((f"features.{index}", next(names)))
            index += 2  # conv, ReLU
        index += 1  # max pool
    pairs += [("classifier.0", "head.fc6"), ("classifier.3", "head.fc7"), ("classifier.6", "fc8")]
    return [(tv, ours, "weight|bias") for tv, ours in pairs]


def torchvision_vgg16_to_paper(sd: Mapping[str, Any]) -> StateDict:
    """torchvision ``vgg16`` (``features.N``, ``classifier.0/3/6``) -> ours."""
    return _rename(sd, _vgg16_modules(), "torchvision VGG-16")


def paper_to_torchvision_vgg16(sd: Mapping[str, Any]) -> StateDict:
    """Our VGG-16 names (``conv1_1`` .. ``fc8``) -> torchvision's ``vgg16``."""
    return _rename(sd, _vgg16_modules(), "paper VGG-16", reverse=True)


_PAPER_VGG16_KEY = re.compile(rf"^(?:{'|'.join(vgg16_conv_names())}|head\.fc6|head\.fc7|fc8)\.(?:weight|bias)$")


# ---------------------------------------------------------------- detection and dispatch

def detect_format(sd: Mapping[str, Any]) -> str:
    """Which of ``FORMATS`` a state dict is in, from its key names; ValueError if none."""
    keys = set(sd)
    if keys and not any("." in k for k in keys) and ({"conv1_w", "res_conv1_bn_s"} & keys
                                                     or any(k.startswith("res2_") for k in keys)):
        return "caffe2_resnet"
    if "features.0.weight" in keys:
        return "torchvision_vgg16"
    if "conv1_1.weight" in keys:
        return "paper_vgg16"
    if "stem.conv1.weight" in keys or any(k.startswith("res2.") for k in keys):
        return "paper"
    if "conv1.weight" in keys or any(k.startswith("layer1.") for k in keys):
        return "torchvision_resnet"
    hint = ""
    if any(k.startswith(("backbone.", "roi_heads.")) for k in keys):
        hint = (" It looks like a detectron2 detector checkpoint: use detectron2_resnet_to_paper "
                "(tools/convert_weights.py --from detectron2).")
    elif any(k.startswith("module.") for k in keys):
        hint = " Its keys start with 'module.' (a DistributedDataParallel wrapper): strip it first."
    raise ValueError(f"Unrecognised checkpoint format (keys start: {sorted(keys)[:5]}); expected "
                     f"one of {', '.join(FORMATS)}.{hint}")


def _check_paper(sd: Mapping[str, Any]) -> StateDict:
    _check_keys(sd, _PAPER_RESNET_KEY.match, "paper ResNet")
    return dict(sd)


def _check_paper_vgg16(sd: Mapping[str, Any]) -> StateDict:
    _check_keys(sd, _PAPER_VGG16_KEY.match, "paper VGG-16")
    return dict(sd)


_TO_PAPER: Dict[str, Callable[[Mapping[str, Any]], StateDict]] = {
    "paper": _check_paper,
    "paper_vgg16": _check_paper_vgg16,
    "torchvision_resnet": torchvision_resnet_to_paper,
    "torchvision_vgg16": torchvision_vgg16_to_paper,
    "caffe2_resnet": caffe2_resnet_to_paper,
}


def to_paper(sd: Mapping[str, Any], source_format: Optional[str] = None) -> Tuple[StateDict, str]:
    """Convert a state dict in any of ``FORMATS`` (detected unless given) to our names.

    Returns ``(state_dict, source_format)``.
    """
    source_format = source_format or detect_format(sd)
    if source_format not in _TO_PAPER:
        raise ValueError(f"Unknown source format {source_format!r}; valid choices: {', '.join(FORMATS)}")
    return _TO_PAPER[source_format](sd), source_format
