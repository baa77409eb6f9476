# The paper's solver (Base-PaperRCNN-C4.yaml, SOLVER): SGD, momentum 0.9, weight decay 0.0005,
# biases at twice the lr and without weight decay (Caffe's Faster R-CNN), lr 0.001 then 0.0001.
# Rows set optimizer.lr and lr_multiplier.steps; the schedule ends at train.max_iter. Linear
# scaling: keep optimizer.lr / dataloader.train.total_batch_size fixed when changing the batch.
import torch

from detectron2.config import LazyCall as L
from detectron2.solver.build import get_default_optimizer_params

from resnet_backbone.detection.lazy import multistep_lr_multiplier

SGD = L(torch.optim.SGD)(
    params=L(get_default_optimizer_params)(
        # params.model is set to the model before the optimizer is instantiated
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        bias_lr_factor=2.0,
        weight_decay_bias=0.0,
    ),
    lr=0.001,
    momentum=0.9,
    nesterov=False,
    weight_decay=0.0005,
)

# lr x gamma at each of `steps` (iterations, as SOLVER.STEPS); no warm-up in the paper
lr_multiplier = L(multistep_lr_multiplier)(
    steps=[],
    max_iter="${..train.max_iter}",
    gamma=0.1,
    warmup_iters=0,
    warmup_factor=0.001,
    warmup_method="linear",
)
