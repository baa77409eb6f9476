"""The detection engine's own rules, checked on the source and on small objects: nothing of
detectron2 is patched (no attribute of a detectron2 module, class or object is assigned), every
v0.6/main difference lives in ``detection/compat.py``, ``metrics.json`` is written in whole lines,
and a CPU model is not given DDP device ids."""
import ast
import io
import logging
import sys
import json
from pathlib import Path

from detectron2.utils.events import EventStorage

from resnet_backbone.detection.compat import split_checkpoint_query, trainer_state
from resnet_backbone.detection.engine import JSONLinesWriter, log_to

DETECTION = Path(__file__).resolve().parents[2] / "resnet_backbone" / "detection"


def _detectron2_names(tree: ast.Module) -> set:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names
                      if a.name.split(".")[0] == "detectron2"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("detectron2"):
            names |= {a.asname or a.name for a in node.names}
    return names


def _root(node):
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def test_no_detectron2_internals_are_patched():
    offenders = []
    for path in sorted(DETECTION.glob("*.py")):
        tree = ast.parse(path.read_text())
        d2 = _detectron2_names(tree)
        for node in ast.walk(tree):
            targets = (node.targets if isinstance(node, ast.Assign) else
                       [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
            offenders += [f"{path.name}:{node.lineno}" for t in targets
                          if isinstance(t, ast.Attribute) and _root(t) in d2]
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("setattr", "delattr") \
                    and node.args and _root(node.args[0]) in d2:
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("_file_handle", "_LOCAL_PROCESS_GROUP"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_version_differences_live_in_compat():
    words = ("_C", "create_local_process_group", "PURE_PYTHON_BUILD", "padding_constraints")
    offenders = [f"{p.name}: {w}" for p in DETECTION.glob("*.py") if p.name != "compat.py"
                 for w in words if any(isinstance(n, (ast.Name, ast.Attribute, ast.alias)) and
                                       w in (getattr(n, "id", None), getattr(n, "attr", None),
                                             getattr(n, "name", None))
                                       for n in ast.walk(ast.parse(p.read_text())))]
    assert offenders == []


def test_metrics_are_appended_in_whole_lines(tmp_path):
    path = tmp_path / "metrics.json"
    writer = JSONLinesWriter(str(path))
    with EventStorage(0) as storage:
        storage.put_scalars(loss=1.0, smoothing_hint=False)
        writer.write()
        storage.iter = 1
        storage.put_scalars(loss=0.5, lr=0.1, smoothing_hint=False)
        writer.write()
        writer.write()  # nothing new: nothing written
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"iteration": 0, "loss": 1.0}, {"iteration": 1, "loss": 0.5, "lr": 0.1}]
    assert path.read_text().endswith("\n")


def test_compat_helpers():
    assert split_checkpoint_query("w.pth?matching_heuristics=True") == ("w.pth", True)
    assert split_checkpoint_query("w.pth") == ("w.pth", False)
    old = {"iteration": 4, "hooks": {"h": 1}, "run_seed": 3,
           "_trainer": {"iteration": 4, "hooks": {}, "optimizer": {"state": {}}}}
    assert trainer_state(old) == {"iteration": 4, "hooks": {"h": 1}, "run_seed": 3,
                                  "optimizer": {"state": {}}}


def test_cpu_model_alone_is_not_wrapped():
    import torch
    from resnet_backbone.distributed import cpu_if_no_cuda, wrap_ddp

    model = torch.nn.Linear(2, 2)
    assert wrap_ddp(model) is model  # one process: no DDP
    assert cpu_if_no_cuda("cpu", "MODEL.DEVICE cpu") == "cpu"


def test_a_second_run_in_one_process_logs_only_to_its_own_folder(tmp_path, monkeypatch):
    """A notebook or a sweep calling ``train_det.main`` twice: the second run's lines go once to
    the console and to its own log.txt, not to the first run's file or to a closed console."""
    first_console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first_console)
    log_to(str(tmp_path / "first"), 0)
    first_console.close()  # as pytest's capture does between tests
    second_console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", second_console)
    d2 = log_to(str(tmp_path / "second"), 0)
    monkeypatch.setattr(logging, "raiseExceptions", True)
    errors = io.StringIO()
    monkeypatch.setattr(sys, "stderr", errors)  # where logging reports a handler's failure
    d2.info("line of the second run")
    for handler in logging.getLogger("detectron2").handlers:
        handler.flush()
    assert "Logging error" not in errors.getvalue(), errors.getvalue()
    assert second_console.getvalue().count("line of the second run") == 1
    assert "line of the second run" in (tmp_path / "second" / "log.txt").read_text()
    assert "line of the second run" not in (tmp_path / "first" / "log.txt").read_text()


def test_weights_of_another_depth_are_refused_not_half_loaded(tmp_path):
    """R-50 weights into an R-18 detector with BN (no FrozenBN check applies): the 3x3
    convolutions of one width would load and the rest not; one error names the mismatch."""
    import pytest
    import torch

    from resnet_backbone.checkpoint import CheckpointError
    from resnet_backbone.detection import get_detection_cfg
    from resnet_backbone.detection.engine import load_weights
    from resnet_backbone.detection.trainer import DetectionTrainer

    config = str(Path(__file__).resolve().parents[2] / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml")
    r50 = DetectionTrainer.build_model(get_detection_cfg(config, ["MODEL.DEVICE", "cpu",
                                                                  "MODEL.PAPER_RESNET.DEPTH", "50"]))
    torch.save({"model": r50.state_dict()}, tmp_path / "r50.pth")
    for weights, fits in ((tmp_path / "r50.pth", False), (None, True)):
        cfg = get_detection_cfg(config, ["MODEL.DEVICE", "cpu"])
        model = DetectionTrainer.build_model(cfg)
        if weights is None:  # this network's own weights load
            weights = tmp_path / "r18.pth"
            torch.save({"model": model.state_dict()}, weights)
        checkpointer = DetectionTrainer.build_checkpointer(cfg, model)
        if fits:
            load_weights(model, checkpointer, str(weights), resume=False)
            continue
        with pytest.raises(CheckpointError, match=r"MODEL.WEIGHTS .*r50.pth does not fit this backbone: "
                                                  r"\d+ of its backbone weights have other shapes \(backbone.res2"):
            load_weights(model, checkpointer, str(weights), resume=False)


def test_a_failed_run_is_not_evaluated_and_its_one_line_errors_lose_detectron2s_traceback():
    """detectron2 runs EvalHook.after_train in a ``finally``: a run that failed at its last
    iteration (the final checkpoint on a full disk) would be evaluated as if it had finished,
    after detectron2 logged the error's traceback."""
    from types import SimpleNamespace

    from resnet_backbone.checkpoint import CheckpointError
    from resnet_backbone.detection.engine import DropReportedTraceback, EvalAfterTraining

    calls = []
    hook = EvalAfterTraining(0, lambda: calls.append(1) or {})
    hook.trainer = SimpleNamespace(iter=9, max_iter=10)
    try:
        raise CheckpointError("writing model_final.pth failed (no space left on device)")
    except CheckpointError as e:
        error = e
        try:
            pass
        finally:
            hook.after_train()  # as detectron2's train() runs it while the error propagates
    assert calls == []
    hook.after_train()  # a run that finished
    assert calls == [1]
    record = logging.LogRecord("detectron2.engine.train_loop", logging.ERROR, __file__, 1,
                               "Exception during training:", None, (type(error), error, None))
    assert not DropReportedTraceback().filter(record)
    record.exc_info = (RuntimeError, RuntimeError("a bug"), None)
    assert DropReportedTraceback().filter(record)  # a bug keeps its traceback
