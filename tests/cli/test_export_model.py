"""tools/export_model.py (``resnet-export-model``, its ``main`` in process): a train_cls
checkpoint exported without naming its network, and one-line user errors. (The export itself:
tests/test_export.py.)"""
from resnet_backbone.cli.export_model import main as export_model

from helpers import needs_onnx


@needs_onnx
def test_tool_exports_a_train_cls_checkpoint(tmp_path, capsys):
    """The checkpoint records its network (here option-A ResNet-20): no model name needed."""
    from resnet_backbone.classification.config import get_cls_cfg
    from resnet_backbone.classification.engine import ClassificationTrainer
    cfg = get_cls_cfg()
    cfg.merge_from_list(["DATASETS.SYNTHETIC.NUM_TRAIN", 64, "DATASETS.SYNTHETIC.NUM_TEST", 16,
                         "SOLVER.IMS_PER_BATCH", 16, "SOLVER.MAX_ITER", 3, "TEST.EVAL_PERIOD", 3,
                         "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False,
                         "OUTPUT_DIR", str(tmp_path / "run")])
    ClassificationTrainer(cfg).train()
    weights = str(tmp_path / "run" / "model_final.pth")
    assert export_model(["--weights", weights, "--format", "onnx", "torchscript",
                         "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == 2, out
    assert (tmp_path / "out" / "cifar_resnet20.onnx").is_file()
    assert (tmp_path / "out" / "cifar_resnet20.ts").is_file()


def test_tool_user_errors_are_one_line(tmp_path, capsys):
    assert export_model(["--model", "resnet51", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Unknown model 'resnet51'") and "\n" not in err
    assert export_model(["--model", "resnet18", "--weights", str(tmp_path / "none.pth"),
                         "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
