# What resnet-train-det (and detectron2's tools/lazyconfig_train_net.py) read besides the model,
# data and solver; the values of Base-PaperRCNN-C4.yaml and detectron2's defaults.
train = dict(
    output_dir="./output",
    init_checkpoint="",  # rows: the ImageNet weights (MODEL.WEIGHTS)
    max_iter=90000,  # rows set it (SOLVER.MAX_ITER)
    amp=dict(enabled=False),  # automatic mixed precision (CUDA only)
    ddp=dict(broadcast_buffers=False, find_unused_parameters=False, fp16_compression=False),
    checkpointer=dict(period=10000, max_to_keep=None),  # model_<iter>.pth every period, all kept
    eval_period=0,  # 0: evaluate after the last iteration only
    log_period=20,
    device="cuda",  # resnet-train-det falls back to the CPU when CUDA is not available
    seed=-1,  # -1: random
    cudnn_benchmark=False,
)
