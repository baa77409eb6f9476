# Table 8, VGG-16 row, COCO val: paper mAP@.5 41.5, mAP@[.5,.95] 21.2.
# Metric: COCOEvaluator AP50 (mAP@.5) and AP (mAP@[.5,.95]) on coco_2014_val.
# Schedule: 8 GPUs, 1 image each (RPN mini-batch 8), 240k iterations at lr 0.003 then 80k at 0.0003 (Faster R-CNN journal version).
# Fewer GPUs: divide total_batch_size and optimizer.lr alike, multiply steps/max_iter.
# Anchors: 4 scales (adds 64) as the VGG-16 COCO row; the paper does not state them for
# ResNet, so both backbones use the same ones here.
# LazyConfig of faster_rcnn_VGG16_coco2014.yaml, the same values (tested). Load it with
# detectron2.config.LazyConfig.load (the relative imports need it), or run
#   resnet-train-det --config-file configs/detection/faster_rcnn_VGG16_coco2014.py key=value ...
from .common.data import dataloader
from .common.models.faster_rcnn_vgg16 import model
from .common.optim import SGD as optimizer
from .common.optim import lr_multiplier
from .common.train import train

model.proposal_generator.anchor_generator.sizes = [[64, 128, 256, 512]]
model.proposal_generator.head.num_anchors = 12  # 4 sizes x 3 aspect ratios
model.roi_heads.num_classes = 80

dataloader.train.dataset.names = "coco_2014_train"
dataloader.test.dataset.names = "coco_2014_val"
dataloader.train.total_batch_size = 8

optimizer.lr = 0.003
lr_multiplier.steps = [240000]
train.max_iter = 320000
train.init_checkpoint = "https://download.pytorch.org/models/vgg16-397923af.pth"
