"""Export a classifier, or a Faster R-CNN detector (a config plus weights), to ONNX, TorchScript or
a ``torch.export`` program, and check each export against eager PyTorch on a sample input.

    resnet-export-model --model resnet50 --format onnx torchscript export
    resnet-export-model --model resnet50 --weights output/imagenet/resnet50/model_final.pth --format onnx
    resnet-export-model --weights output/cifar10/resnet110/model_final.pth --format onnx
    resnet-export-model --config-file configs/detection/faster_rcnn_R_101_C4_voc0712.yaml \\
        --weights output/voc/model_final.pth --format onnx torchscript --image dog.jpg
    resnet-export-model --config-file configs/detection/faster_rcnn_VGG16_voc0712.py \\
        --weights output/voc_vgg/model_final.pth --format onnx

(``python tools/export_model.py`` is the same.) Files go to ``--output-dir`` as
``<model><extension>``. Every export is run once on the sample input (classifiers: a batch of
another size than the one exported, so a dynamic batch is checked) and the largest difference
from eager is printed. Tolerances: classifiers, 1e-4 of the range of the eager logits;
detectors, the same detections (class, score within 1e-3, box within 0.5 px).

A classifier is named (``--model resnet50``, ``cifar_resnet110``, ...; options ``--num-classes``,
``--shortcut``, ``--stride-in-3x3``) or comes from a ``tools/train_cls.py`` checkpoint, which
records its network. A detector's ONNX/TorchScript graph takes one image ``(3, H, W)``, float,
in the config's input format (``INPUT.FORMAT``, ``model.input_format``), already resized to
the test size (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``, the test mapper's resize), and returns ``boxes (N, 4)``, ``scores (N,)``, ``classes (N,)`` in that
image's pixels; normalisation, the backbone, RPN, RoI head and NMS are inside the graph.

Exit status: 0 when every export passed its check, 1 when one did not (the report line says
FAILED), 2 with one ``error: ...`` line for bad input.
"""
import argparse
import os
import sys
from typing import List, Tuple

from torch import nn

from ..export import FORMATS
from .common import add_network_options, network_options, run_tool


def parse_args(argv=None) -> argparse.Namespace:
    from .. import list_models
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Models: {', '.join(list_models())}")
    p.add_argument("--model", dest="name", metavar="NAME",
                   help="classifier name (default: the one a --weights checkpoint records)")
    p.add_argument("--config-file", metavar="FILE",
                   help="export the detector of this detection config instead of a classifier")
    p.add_argument("--weights", metavar="FILE", help="weights: a tools/train_cls.py checkpoint or "
                   "state dict (classifier), MODEL.WEIGHTS (detector); default: initial weights")
    p.add_argument("--format", nargs="+", choices=list(FORMATS), default=["onnx"],
                   help="formats to write (detectors: onnx, torchscript)")
    p.add_argument("--output-dir", default="exported", help="where to write (default: exported)")
    p.add_argument("--input-size", type=int, default=None,
                   help="classifier: side of the square sample input (default 224; CIFAR nets 32)")
    p.add_argument("--batch", type=int, default=2, help="classifier: batch size exported (default 2)")
    add_network_options(p)
    p.add_argument("--image", metavar="FILE",
                   help="detector: sample image (default: a random image at the test size)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="detector: config overrides after every --option: KEY VALUE pairs (YAML) "
                        "or key=value (LazyConfig .py)")
    args = p.parse_args(argv)
    if args.config_file and args.name:
        p.error("give a classifier --model or a detector --config-file, not both")
    if not (args.config_file or args.name or args.weights):
        p.error("give a classifier --model, a tools/train_cls.py checkpoint with --weights, or "
                "a detector --config-file")
    if args.opts and not args.config_file:
        p.error(f"unrecognized arguments: {' '.join(args.opts)}")
    return args


def build_classifier(args: argparse.Namespace) -> Tuple[nn.Module, str, int]:
    """(model, name, input side) from MODEL and its options, or from a train_cls checkpoint."""
    from ..checkpoint import load_checkpoint_file, load_state_dict_checked, state_dict_from_checkpoint
    from ..models import create_model, model_spec
    if args.weights and not args.name:
        from ..classification.config import trained_image_size
        from ..classification.backbone_export import classifier_from_checkpoint
        model, cfg = classifier_from_checkpoint(args.weights)
        return model, cfg.MODEL.NAME, trained_image_size(cfg)
    spec = model_spec(args.name)
    options = network_options(args)
    if args.num_classes:
        options["num_classes"] = args.num_classes
    model = create_model(args.name, **options)
    if args.weights:
        state, _ = state_dict_from_checkpoint(load_checkpoint_file(args.weights), args.weights)
        load_state_dict_checked(model, state, source=args.weights)
    return model.eval(), args.name, 32 if spec.cifar else 224


def export_classifier_files(args: argparse.Namespace) -> List:
    from ..export import export_classifier
    model, name, input_size = build_classifier(args)
    size = args.input_size or input_size
    return [export_classifier(model, os.path.join(args.output_dir, name + FORMATS[fmt]), fmt,
                              input_size=size, batch=args.batch)
            for fmt in args.format]


def export_detector_files(args: argparse.Namespace) -> List:
    from ..detection.export import DETECTOR_FORMATS, build_detector, export_detector, sample_image
    bad = [f for f in args.format if f not in DETECTOR_FORMATS]
    if bad:
        raise ValueError(f"detectors export to {', '.join(DETECTOR_FORMATS)}; not {', '.join(bad)}")
    model, contract = build_detector(args.config_file, args.weights, args.opts)
    image = sample_image(contract, args.image)
    name = os.path.splitext(os.path.basename(args.config_file))[0]
    if name == "config":  # the config.yaml of a training run: name the file after the run
        name = os.path.basename(os.path.dirname(os.path.abspath(args.config_file))) or name
    names = ", ".join(contract.class_names) if contract.class_names else "none recorded"
    print(f"{name}: input (3, H, W) {contract.input_format}, shorter side {contract.min_size} "
          f"(longer at most {contract.max_size}), sample {tuple(image.shape)}; outputs boxes, "
          f"scores, classes; class names: {names}")
    return [export_detector(model, image, os.path.join(args.output_dir, name + DETECTOR_FORMATS[fmt]),
                            fmt, contract) for fmt in args.format]


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        reports = export_detector_files(args) if args.config_file else export_classifier_files(args)
        for report in reports:
            print(report)
        return 0 if all(r.ok for r in reports) else 1
    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
