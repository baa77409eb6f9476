# The data of the paper's Faster R-CNN recipes (Base-PaperRCNN-C4.yaml, INPUT/DATALOADER): single
# scale, shorter side 600 and longer side at most 1000, horizontal flips in training, images in
# the model's input_format. Rows set the dataset names; `--dataset NAME JSON IMAGE_ROOT` of
# resnet-train-det registers COCO-format data to name here.
# The training loader is resnet_backbone's resumable one (a resumed run sees the batches the
# uninterrupted run saw), with build_detection_train_loader's arguments plus `seed`.
from omegaconf import OmegaConf

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts

from resnet_backbone.detection.lazy import build_evaluator, build_resumable_train_loader

dataloader = OmegaConf.create()

dataloader.train = L(build_resumable_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="voc_2007_trainval", filter_empty=True),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=[600], max_size=1000, sample_style="choice"),
            L(T.RandomFlip)(horizontal=True, vertical=False),
        ],
        image_format="${....model.input_format}",
    ),
    total_batch_size=2,  # Fast R-CNN mini-batch: 2 images
    aspect_ratio_grouping=True,
    num_workers=4,
    seed="${...train.seed}",  # -1: a random seed, stored in the checkpoints
)

dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="voc_2007_test", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=600, max_size=1000, sample_style="choice"),
        ],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=4,
)

# COCOEvaluator or PascalVOCDetectionEvaluator (VOC 2007: 11-point AP, the paper's) from the
# dataset, results under train.output_dir/inference/<name>
dataloader.evaluator = L(build_evaluator)(
    dataset_name="${..test.dataset.names}",
    output_dir="${...train.output_dir}",
)

# Datasets are checked before a job (resnet_backbone.detection.validation): False skips (and
# counts) the bad annotations of a training set; True makes any problem an error.
dataloader.strict = False
