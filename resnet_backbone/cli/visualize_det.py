"""Draw a trained detector's boxes on a few images of a dataset, one PNG each, next to the
ground truth: detectron2's ``Visualizer`` when OpenCV (``cv2``, which it imports) is installed,
else torchvision's ``draw_bounding_boxes``.

    python tools/visualize_det.py --config-file output/demo_shapes/config.yaml \\
        --weights output/demo_shapes/model_final.pth --dataset-name shapes_demo_val \\
        --dataset shapes_demo_val output/demo_shapes/data/shapes_demo_val/annotations.json \\
        output/demo_shapes/data/shapes_demo_val/images --num-images 4 --output vis/

Without ``--config-file`` it draws the demo's model (``output/demo_shapes``) on its validation
images. (``resnet-visualize-det`` is the same.) Bad input ends with ``error: ...`` and exit
status 2.
"""
import argparse
import os
import sys


import numpy as np
import torch
from PIL import Image

# The plugin first: it registers the paper's networks and names the import warnings to silence.
from ..detection import get_detection_cfg
from ..distributed import cpu_if_no_cuda
from ..drawing import draw_boxes
from ..detection.datasets import check_datasets, numpy_compat, register_datasets
from ..detection.demo import TRAIN_NAME, VAL_NAME, write_demo_datasets
from ..detection.trainer import DetectionTrainer
from .common import run_tool
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402
from detectron2.data.detection_utils import read_image  # noqa: E402

DEMO_OUTPUT = "output/demo_shapes"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", help="config.yaml of the run (default: the demo's)")
    p.add_argument("--weights", default="", help="checkpoint (default: OUTPUT_DIR/model_final.pth)")
    p.add_argument("--dataset-name", default="",
                   help="dataset to draw (default: first of DATASETS.TEST)")
    p.add_argument("--dataset", nargs=3, action="append", default=[],
                   metavar=("NAME", "JSON", "IMAGE_ROOT"), help="register a COCO-format dataset")
    p.add_argument("--num-images", type=int, default=4)
    p.add_argument("--score-thresh", type=float, default=0.5)
    p.add_argument("--output", default="", help="folder for the PNGs (default: OUTPUT_DIR/vis)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p.parse_args(argv)


def load_model(cfg, weights):
    model = DetectionTrainer.build_model(cfg)
    DetectionTrainer.build_checkpointer(cfg, model).load(weights)
    return model.eval()


def draw(cfg, model, dataset_name, num_images, score_thresh, out_dir):
    """Predictions (left) and ground truth (right) of the first ``num_images`` images."""
    os.makedirs(out_dir, exist_ok=True)
    with numpy_compat():
        records = DatasetCatalog.get(dataset_name)[:num_images]
    metadata = MetadataCatalog.get(dataset_name)
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    written = []
    for record in records:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        height, width = image.shape[:2]
        resized = resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            instances = model([{"image": tensor, "height": height, "width": width}])[0]["instances"]
        instances = instances[instances.scores >= score_thresh].to("cpu")
        rgb = np.ascontiguousarray(image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else image)
        predicted, truth = render(rgb, metadata, instances, record)
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(out_dir, stem + ".png")
        Image.fromarray(np.concatenate([predicted, truth], axis=1)).save(path)
        written.append(path)
    return written


def render(rgb, metadata, instances, record):
    """(predictions, ground truth) drawn on copies of ``rgb``."""
    try:
        from detectron2.utils.visualizer import Visualizer
    except ImportError:  # detectron2's Visualizer needs cv2 (opencv-python)
        names = metadata.thing_classes
        gt = [(a["bbox"], a["category_id"], None) for a in record.get("annotations", [])]
        if gt and record["annotations"][0]["bbox_mode"] == 1:  # XYWH_ABS -> XYXY_ABS
            gt = [((x, y, x + w, y + h), c, s) for (x, y, w, h), c, s in gt]
        pred = list(zip(instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist(),
                        instances.scores.tolist()))
        return draw_boxes(rgb, pred, names), draw_boxes(rgb, gt, names)
    return (Visualizer(rgb, metadata).draw_instance_predictions(instances).get_image(),
            Visualizer(rgb, metadata).draw_dataset_dict(record).get_image())


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: visualize(args))


def visualize(args) -> None:
    config_file = args.config_file or os.path.join(DEMO_OUTPUT, "config.yaml")
    cfg = get_detection_cfg(config_file, args.opts)
    cfg.MODEL.DEVICE = cpu_if_no_cuda(cfg.MODEL.DEVICE, "MODEL.DEVICE cpu")
    name = args.dataset_name or cfg.DATASETS.TEST[0]
    specs = [tuple(s) for s in args.dataset]
    if name in (TRAIN_NAME, VAL_NAME):  # the demo's generated data, beside its outputs
        specs = write_demo_datasets(os.path.join(cfg.OUTPUT_DIR, "data")) + specs
    register_datasets(specs)
    check_datasets([name])
    weights = args.weights or os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    model = load_model(cfg, weights)
    out_dir = args.output or os.path.join(cfg.OUTPUT_DIR, "vis")
    for path in draw(cfg, model, name, args.num_images, args.score_thresh, out_dir):
        print(path)


if __name__ == "__main__":
    sys.exit(main())
