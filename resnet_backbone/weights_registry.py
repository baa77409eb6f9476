"""Named pre-trained weights, found in a local folder and verified by their sha256: offline first.

``create_model("resnet50", weights="resnet50.torchvision")``, detection's ``MODEL.WEIGHTS`` and
LazyConfig's ``train.init_checkpoint`` accept a name of ``REGISTRY`` as well as a path. A name is
a file in ``weights_dir()`` (``$RESNET_BACKBONE_WEIGHTS``, else
``$XDG_CACHE_HOME/resnet_backbone/weights``, ``~/.cache`` without XDG): nothing is downloaded.
The file must have the published sha256 (torchvision's file names end in its first 8 hex digits,
which torchvision's ``check_hash`` verifies; the full digests below were published beside those
names, see each entry's ``checksum_source``). Where no checksum is published (MSRA's ``R-50.pkl``
/ ``R-101.pkl``, ruotianluo's ``vgg16_caffe.pth``) the name is refused and the file's path must
be given instead: a file we cannot verify is the user's to vouch for, not ours.

Each entry also says what the network needs to reproduce the weights' training (the metadata a
backbone file of ``tools/export_backbone.py`` carries in its ``meta``): the input's channel
order and pixel mean / std in 0-255 units, where the bottleneck's stride is (``stride_in_1x1``),
the shortcut option, and which norm suits it. MSRA's caffe2 files hold BN folded into an affine
map without statistics (``resnet_backbone.convert``): fine-tune them with ``FrozenBN``, or keep
BN in eval mode.

Functions: ``list_weights``, ``weights_entry``, ``weights_dir``, ``is_weights_name``,
``resolve_weights`` (name or path -> verified local path) and ``load_named_weights`` (-> a state
dict in our names, refused if it is another network's). User errors are one-line ``ValueError``
/ ``FileNotFoundError``: what is wrong and how to fix it.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from . import convert
from .checkpoint import load_checkpoint_file, shape_mismatches, state_dict_from_checkpoint

#: The environment variable naming the folder of named weights files.
ENV_VAR = "RESNET_BACKBONE_WEIGHTS"
#: ``hash_kind`` values: what ``sha256`` holds.
FULL_SHA256 = "sha256"
SHA256_PREFIX = "sha256 prefix, as published in the file name"
NO_CHECKSUM = "none published"

#: Pixel conventions, 0-255 units: MSRA / Detectron caffe weights (BGR, std absorbed into conv1),
#: torchvision's ImageNet weights (RGB, ImageNet mean and std), py-faster-rcnn's Caffe VGG-16.
MSRA_MEAN_BGR = (103.530, 116.280, 123.675)
TORCHVISION_MEAN_RGB = (123.675, 116.28, 103.53)
TORCHVISION_STD_RGB = (58.395, 57.12, 57.375)
CAFFE_VGG16_MEAN_BGR = (102.9801, 115.9465, 122.7717)
UNIT_STD = (1.0, 1.0, 1.0)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsEntry:
    """One named weights file and what a model needs to use it.

    ``model``: the ``create_model`` name the weights fit. ``format``: one of
    ``convert.FORMATS``. ``sha256``: per ``hash_kind``, the full hex digest, the published prefix,
    or None (no checksum published: the name is refused, a path must be given).
    ``checksum_source``: where the digest was published. ``stride_in_1x1`` / ``shortcut``: the
    builder options the weights were trained with (None: not a ResNet option). ``norm``: the
    norm to fine-tune them with.
    """

    name: str
    model: str
    file_name: str
    url: str
    format: str
    sha256: Optional[str]
    hash_kind: str
    checksum_source: str
    input_format: str
    pixel_mean: Tuple[float, float, float]
    pixel_std: Tuple[float, float, float]
    stride_in_1x1: Optional[bool] = None
    shortcut: Optional[str] = None
    norm: str = "BN"
    notes: str = ""

    def model_options(self) -> Dict[str, Any]:
        """The builder options the weights need (``create_model`` keyword arguments)."""
        options = {"stride_in_1x1": self.stride_in_1x1, "shortcut": self.shortcut}
        return {k: v for k, v in options.items() if v is not None}

    def meta(self) -> Dict[str, Any]:
        """The weights' metadata under the keys of a backbone file's ``meta``
        (``checkpoint_meta.backbone_meta``), without what the model registry knows (depth)."""
        return {"model_name": self.model, **self.model_options(), "norm": self.norm,
                "input_format": self.input_format, "pixel_mean": list(self.pixel_mean),
                "pixel_std": list(self.pixel_std)}


def _msra(depth: int) -> WeightsEntry:
    """Detectron's caffe2 copy of MSRA's original caffe ResNet (detectron2's ``R-{depth}.pkl``)."""
    return WeightsEntry(
        name=f"resnet{depth}.msra", model=f"resnet{depth}", file_name=f"R-{depth}.pkl",
        url=f"https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-{depth}.pkl",
        format="caffe2_resnet", sha256=None, hash_kind=NO_CHECKSUM,
        checksum_source="none: Detectron's and detectron2's MODEL_ZOO list the file without one",
        input_format="BGR", pixel_mean=MSRA_MEAN_BGR, pixel_std=UNIT_STD, stride_in_1x1=True,
        shortcut="B", norm="FrozenBN",
        notes=(f"detectron2://ImageNetPretrained/MSRA/R-{depth}.pkl: MSRA's "
               f"ResNet-{depth}-model.caffemodel as caffe2 blobs, BN folded, no statistics"))


#: Where the full digests of torchvision's current ImageNet files come from: pytorch/vision
#: publishes the first 8 hex digits (the file name, checked by torchvision's ``check_hash``);
#: the full digests are those that independent public projects pin for the same file names.
_TV_SOURCE = ("prefix: the file name (pytorch/vision); full digest: as pinned for that file by "
              "independent public projects, agreeing with the prefix")


def _torchvision(model: str, tag: str, sha256: Optional[str] = None) -> WeightsEntry:
    """torchvision's ``IMAGENET1K_V1`` weights of ``model`` (``<model>-<tag>.pth``), checked by
    their full ``sha256`` where independent sources agree on it, else by the published prefix
    ``tag`` (what torchvision's ``check_hash`` checks)."""
    resnet = model.startswith("resnet")
    return WeightsEntry(
        name=f"{model}.torchvision", model=model, file_name=f"{model}-{tag}.pth",
        url=f"https://download.pytorch.org/models/{model}-{tag}.pth",
        format="torchvision_resnet" if resnet else "torchvision_vgg16", sha256=sha256 or tag,
        hash_kind=FULL_SHA256 if sha256 else SHA256_PREFIX,
        checksum_source=_TV_SOURCE if sha256 else "the file name (pytorch/vision)", input_format="RGB",
        pixel_mean=TORCHVISION_MEAN_RGB, pixel_std=TORCHVISION_STD_RGB,
        stride_in_1x1=False if resnet else None, shortcut="B" if resnet else None,
        notes="torchvision ..._Weights.IMAGENET1K_V1; the same file name in torch.hub's cache")


_ENTRIES = [
    _msra(50),
    _msra(101),
    _torchvision("resnet18", "f37072fd",
                 "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"),
    _torchvision("resnet34", "b627a593",
                 "b627a593bcbe140c234610266fe4f8ae95ea42fc881d091c9b6052e6b1d0590f"),
    _torchvision("resnet50", "0676ba61",
                 "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a"),
    _torchvision("resnet101", "63fe2227"),  # a full digest found in two projects only: the prefix
    _torchvision("resnet152", "394f9c45",
                 "394f9c45966e3651a89bbb78a48410a6755854ce4a5ab64927cf1c7247f85e58"),
    _torchvision("vgg16", "397923af",
                 "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"),
    WeightsEntry(
        name="vgg16.caffe", model="vgg16", file_name="vgg16_caffe.pth",
        url="https://filebox.ece.vt.edu/~jw2yang/faster-rcnn/pretrained-base-models/vgg16_caffe.pth",
        format="torchvision_vgg16", sha256=None, hash_kind=NO_CHECKSUM,
        checksum_source="none: jwyang/faster-rcnn.pytorch's README links it without one",
        input_format="BGR", pixel_mean=CAFFE_VGG16_MEAN_BGR, pixel_std=UNIT_STD,
        notes="Caffe's VGG-16 (VGG_ILSVRC_16_layers) in torchvision's layout, by ruotianluo; "
              "Caffe pools with ceil mode"),
]

#: Every named weights file, by name.
REGISTRY: Dict[str, WeightsEntry] = {entry.name: entry for entry in _ENTRIES}


def list_weights(model: Optional[str] = None) -> List[str]:
    """Names ``resolve_weights`` accepts (those for ``model`` only, if given)."""
    return [name for name, entry in REGISTRY.items() if model is None or entry.model == model]


def is_weights_name(text: str) -> bool:
    """``text`` is a name of ``REGISTRY`` (not a path)."""
    return isinstance(text, str) and text in REGISTRY


def weights_entry(name: str) -> WeightsEntry:
    """The entry called ``name``; ValueError listing the known names if there is none."""
    if not is_weights_name(name):
        raise ValueError(f"Unknown weights {name!r}; known names: {', '.join(REGISTRY)} (or give "
                         "the path of a weights file)")
    return REGISTRY[name]


def weights_dir() -> Path:
    """The folder of named weights files: ``$RESNET_BACKBONE_WEIGHTS``, else
    ``$XDG_CACHE_HOME/resnet_backbone/weights`` (``~/.cache`` when XDG_CACHE_HOME is unset)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(cache).expanduser() / "resnet_backbone" / "weights"


#: (real path, size, mtime_ns) -> sha256 hex digest: a file is hashed once per process.
_DIGESTS: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: os.PathLike) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks; remembered for the process while
    the file keeps its size and modification time."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _verify(entry: WeightsEntry, path: Path) -> None:
    actual = file_sha256(path)
    if not actual.startswith(entry.sha256.lower()):
        what = "sha256" if entry.hash_kind == FULL_SHA256 else "sha256 prefix"
        raise ValueError(f"{path} is not the file of weights {entry.name}: its sha256 is {actual}, "
                         f"expected {what} {entry.sha256}; delete it and download {entry.url} "
                         "again")


#: Suffixes of weights files: a string with one of them (or a folder in it) is a path, not a name.
_FILE_SUFFIXES = (".pth", ".pt", ".pkl", ".pyth", ".bin", ".safetensors", ".ckpt", ".tar")


def resolve_weights(name_or_path: os.PathLike) -> str:
    """The local file of ``name_or_path``: a path that exists, as is; a name of ``REGISTRY``, the
    file of that name in ``weights_dir()`` once its sha256 is verified.

    Raises FileNotFoundError for a missing file (naming where to put it and where to get it),
    ValueError for a file with another sha256 (naming both), for a name whose source publishes
    no checksum (give the path instead) and for an unknown name (listing the known ones).
    """
    text = os.fspath(name_or_path)
    if os.path.isfile(text):
        return text
    if not is_weights_name(text):
        if os.sep in text or "/" in text or text.endswith(_FILE_SUFFIXES):
            raise FileNotFoundError(f"Weights file {text} does not exist; give the path of a "
                                    f"weights file or one of the names {', '.join(REGISTRY)}")
        weights_entry(text)  # raises: unknown name, listing the known ones
    entry = REGISTRY[text]
    if entry.sha256 is None:
        raise ValueError(f"Weights {entry.name} cannot be used by name: its source publishes no "
                         f"checksum to verify {entry.file_name} against; download {entry.url} "
                         "and give the file's path instead")
    path = weights_dir() / entry.file_name
    if not path.is_file():
        raise FileNotFoundError(f"Weights {entry.name} not found: download {entry.url} and save it "
                                f"as {path} (the folder is ${ENV_VAR} if set)")
    _verify(entry, path)
    return str(path)


def _check_fit(state: Mapping[str, Any], model: torch.nn.Module, source: str,
               model_name: str) -> None:
    """ValueError (one line) unless ``state`` has every weight of ``model`` with its shape; a
    missing classifier (``linear.*``: a backbone-only file) is allowed (the loader reports it)."""
    own = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mismatched = shape_mismatches(own, state)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.endswith("num_batches_tracked")]
    if mismatched and all(k.startswith("linear.") for k, *_ in mismatched) and not missing:
        classes = tuple(state["linear.weight"].shape)[0]
        raise ValueError(f"{source} has a {classes}-class classifier, the model {model_name} has "
                         f"{tuple(own['linear.weight'].shape)[0]}: build it with "
                         f"num_classes={classes} (then replace .linear to fine-tune)")
    if mismatched or unexpected or [k for k in missing if not k.startswith("linear.")]:
        shown = "; ".join(f"{k}: {'x'.join(map(str, m))} in the model, {'x'.join(map(str, f))} "
                          "in the file" for k, m, f in mismatched[:2])
        raise ValueError(
            f"{source} does not fit {model_name}: {len(mismatched)} weights of other shapes"
            f"{' (' + shown + ')' if shown else ''}, {len(missing)} missing, {len(unexpected)} "
            f"unexpected (e.g. {(missing + unexpected)[:2]}); they are another network's "
            "weights: build the network they were saved from")


def entry_for_model(name_or_path: os.PathLike, model_name: str) -> Optional[WeightsEntry]:
    """The entry ``name_or_path`` names (None for a path that exists or a string that is not a
    name); a one-line ValueError if it holds another model's weights than ``model_name``."""
    text = os.fspath(name_or_path)
    entry = REGISTRY.get(text) if not os.path.isfile(text) else None
    if entry is not None and entry.model != model_name:
        fitting = list_weights(model_name)
        raise ValueError(f"Weights {entry.name} are {entry.model}'s, not {model_name}'s: use "
                         f"create_model({entry.model!r}, weights={entry.name!r})"
                         + (f", or weights of {model_name}: {', '.join(fitting)}" if fitting else ""))
    return entry


def load_named_weights(name_or_path: os.PathLike, model_name: str,
                       model: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
    """The weights of a registry name or a path, as a state dict in our (paper) names.

    Refused with a one-line ValueError: a named entry of another model than ``model_name``, and,
    when ``model`` (the network about to receive them) is given, weights whose names or shapes do
    not fit it. The file is read safely (``load_checkpoint_file``) and converted by
    ``convert.to_paper`` from the entry's format (a path's format is detected from its names).
    """
    text = os.fspath(name_or_path)
    entry = entry_for_model(text, model_name)
    path = resolve_weights(text)
    state, _ = state_dict_from_checkpoint(load_checkpoint_file(path), path)
    state, _ = convert.to_paper(state, entry.format if entry else None)
    if model is not None:
        _check_fit(state, model, f"Weights {entry.name if entry else path}", model_name)
    return state
