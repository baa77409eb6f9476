# Table 7, VGG-16 row, VOC 2007 test (07+12 train): paper mAP 73.2.
# Metric: PascalVOCDetectionEvaluator AP50 on voc_2007_test (11-point VOC07 metric).
# Schedule (ours; the paper gives only lr 0.001 then 0.0001): 80k + 30k iterations of 2 images on 1 GPU.
# LazyConfig of faster_rcnn_VGG16_voc0712.yaml, the same values (tested). Load it with
# detectron2.config.LazyConfig.load (the relative imports need it), or run
#   resnet-train-det --config-file configs/detection/faster_rcnn_VGG16_voc0712.py key=value ...
from .common.data import dataloader
from .common.models.faster_rcnn_vgg16 import model
from .common.optim import SGD as optimizer
from .common.optim import lr_multiplier
from .common.train import train

model.roi_heads.num_classes = 20

dataloader.train.dataset.names = ["voc_2007_trainval", "voc_2012_trainval"]
dataloader.test.dataset.names = "voc_2007_test"
dataloader.train.total_batch_size = 2

optimizer.lr = 0.001
lr_multiplier.steps = [80000]
train.max_iter = 110000
train.init_checkpoint = "https://download.pytorch.org/models/vgg16-397923af.pth"
