"""Convert ResNet / VGG-16 weights between the paper's names (ours = detectron2's) and
torchvision, MSRA caffe2 (``R-50.pkl``) and detectron2 checkpoint layouts.

    python tools/convert_weights.py resnet50-torchvision.pth r50_paper.pth
    python tools/convert_weights.py --from caffe2 R-50.pkl r50_paper.pth
    python tools/convert_weights.py --to caffe2 r50_paper.pth R-50-ours.pkl
    python tools/convert_weights.py --to detectron2 r50_paper.pth r50_d2.pkl   # MODEL.WEIGHTS
    python tools/convert_weights.py --from detectron2 model_final.pth r50_backbone.pth

Files are read safely (``resnet_backbone.checkpoint.load_checkpoint_file``: no code runs from a
``.pkl``) and written atomically. Conversions are defined in ``resnet_backbone/convert.py``.
(``resnet-convert-weights`` is the same.) Bad input ends with one line ``error: ...`` and exit
status 2.

Our (paper) layout is written as ``{"model": state dict, "meta": {...}}`` (any loader of the
package unwraps ``model``; plain PyTorch: ``torch.load(f)["model"]``). ``meta`` says how the
weights see images, so that nobody has to remember it: for torchvision and MSRA caffe2 sources
the network (inferred from the parameter names), the stride placement, the channel order and
the pixel mean / std of that source (``resnet_backbone.checkpoint_meta.converted_meta``); a
paper-layout input's own ``meta`` is kept. An input whose preprocessing is unknown (a
detectron2 detector, a paper-layout file without ``meta``) gives the plain state dict, as before.
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

from .. import convert
from ..checkpoint import (load_checkpoint_file, save_checkpoint_atomic, save_pickle_atomic,
                          state_dict_from_checkpoint)
from ..checkpoint_meta import SOURCE_PREPROCESSING, converted_meta
from .common import run_tool

#: --from choice -> the formats of ``convert.detect_format`` it covers.
SOURCES = {"torchvision": ("torchvision_resnet", "torchvision_vgg16"),
           "caffe2": ("caffe2_resnet",), "paper": ("paper", "paper_vgg16")}
TARGETS = ("paper", "torchvision", "caffe2", "detectron2")
AUTHOR = "resnet_backbone"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Output containers: paper -> .pth {'model': state dict, 'meta': how the weights "
               "see images} (a plain state dict when the input does not say); torchvision -> "
               ".pth state dict; caffe2 -> .pkl "
               "{'blobs': numpy arrays} (Detectron and detectron2 read it); detectron2 -> .pkl or "
               ".pth {'model': ..., '__author__': 'resnet_backbone', 'matching_heuristics': True}, "
               "ResNet names without the classifier, for MODEL.WEIGHTS. torchvision weights put "
               "the bottleneck stride in the 3x3 conv: build their models with "
               "stride_in_1x1=False; MSRA caffe2 weights use the paper's stride_in_1x1=True.")
    parser.add_argument("--from", dest="source", default="auto",
                        choices=["auto", *SOURCES, "detectron2"],
                        help="input layout (default: detected from the key names); detectron2: a "
                             "detector checkpoint whose ResNet is extracted (backbone. / "
                             "backbone.bottom_up. / roi_heads.res5.)")
    parser.add_argument("--to", dest="target", default="paper", choices=TARGETS,
                        help="output layout (default: paper, our names)")
    parser.add_argument("input", metavar="INPUT", help="checkpoint to read (.pth, .pt, .pkl)")
    parser.add_argument("output", metavar="OUTPUT", help="file to write (.pth or .pkl)")
    return parser.parse_args(argv)


class Read(NamedTuple):
    """An input file, in our names."""

    paper: Dict[str, Any]  # the state dict
    found: str  # its detected format
    container: str  # the key it was under ("" for none)
    n_read: int  # tensors read
    meta: Optional[Dict]  # how the weights see images (None: unknown)


def read_paper(path: str, source: str) -> Read:
    """The weights of ``path`` in our names, and their ``meta`` when the source says it."""
    obj = load_checkpoint_file(path)
    sd, container = state_dict_from_checkpoint(obj, path)
    if source == "auto" and any(k.startswith(convert.D2_PREFIXES) for k in sd):
        source = "detectron2"
    if source == "detectron2":
        return Read(convert.detectron2_resnet_to_paper(sd), "detectron2", container, len(sd), None)
    found = convert.detect_format(sd)
    if source != "auto" and found not in SOURCES[source]:
        raise ValueError(f"{path} looks like {found}, not --from {source}; use --from auto")
    paper, found = convert.to_paper(sd, found)
    if found in SOURCE_PREPROCESSING:
        meta = converted_meta(paper, found)
    else:  # ours already: what the file says, if anything
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else None
    return Read(paper, found, container, len(sd), meta)


def convert_to(sd: Dict[str, Any], target: str) -> Dict[str, Any]:
    is_vgg = convert.detect_format(sd) == "paper_vgg16"
    if target == "paper":
        return sd
    if target == "torchvision":
        return (convert.paper_to_torchvision_vgg16 if is_vgg else convert.paper_to_torchvision_resnet)(sd)
    if is_vgg:
        raise ValueError(f"--to {target} is for ResNets; for VGG-16 use --to paper or torchvision "
                         "(the detection plugin's checkpointer reads both)")
    if target == "caffe2":
        return convert.paper_to_caffe2_resnet(sd)
    return convert.paper_to_detectron2_resnet(sd)


def write(sd: Dict[str, Any], target: str, path: str, meta: Optional[Dict] = None) -> None:
    """``sd`` in the container of ``target`` and ``path``'s suffix; ``meta`` goes with our
    (paper) layout only (the other layouts are read by other software)."""
    meta = meta if target == "paper" else None
    suffix = Path(path).suffix
    if suffix not in (".pth", ".pt", ".pkl"):
        raise ValueError(f"OUTPUT must end in .pth, .pt or .pkl; got {path!r}")
    if target == "caffe2":
        if suffix != ".pkl":
            raise ValueError("--to caffe2 writes a .pkl of numpy arrays; name OUTPUT *.pkl")
        save_pickle_atomic({"blobs": sd}, path)
    elif suffix == ".pkl":
        if target == "torchvision":
            raise ValueError("torchvision loads .pth state dicts; name OUTPUT *.pth")
        arrays = {k: convert.to_numpy(v) for k, v in sd.items()}
        save_pickle_atomic({"model": arrays, "__author__": AUTHOR, "matching_heuristics": True,
                            **({"meta": meta} if meta else {})}, path)
    else:
        tensors = {k: convert.to_tensor(v) for k, v in sd.items()}
        if target == "detectron2":
            tensors = {"model": tensors, "__author__": AUTHOR, "matching_heuristics": True}
        elif meta:
            tensors = {"model": tensors, "meta": meta}
        save_checkpoint_atomic(tensors, path)


def describe_meta(meta: Optional[Dict]) -> str:
    """One line on what ``meta`` records (for the user to check)."""
    if not meta:
        return ("meta  none: the input does not say how its images were preprocessed (this file "
                "serves as initial weights; resnet-predict-cls needs a torchvision or MSRA source)")
    text = f"meta  {meta.get('model_name')} ({meta.get('source_format', 'from the input')}"
    if meta.get("source_format"):
        text += ", network inferred from the parameter names"
    if "stride_in_1x1" in meta:
        text += f", stride_in_1x1 {meta['stride_in_1x1']}"
    return (text + f"), input {meta.get('input_format')}, pixel mean {meta.get('pixel_mean')}, "
            f"std {meta.get('pixel_std')}")


def convert_file(args: argparse.Namespace) -> None:
    read = read_paper(args.input, args.source)
    out = convert_to(read.paper, args.target)
    write(out, args.target, args.output, read.meta)
    inside = f" (inside '{read.container}')" if read.container else ""
    print(f"read  {args.input}: {read.n_read} tensors{inside}, format {read.found}")
    print(f"wrote {args.output}: {len(out)} tensors, format {args.target}")
    if args.target == "paper":
        print(describe_meta(read.meta))


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: convert_file(args))


if __name__ == "__main__":
    sys.exit(main())
