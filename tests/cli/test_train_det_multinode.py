"""tools/train_det.py on two "machines" without a shared filesystem (helpers.py: two groups of
processes on this host, each in its own working folder with its own copy of the dataset and its
own cache, gloo over 127.0.0.1), started with detectron2's flags (``--num-machines 2
--machine-rank R --dist-url tcp://...``) or by ``torchrun --nnodes 2`` (c10d rendezvous).

The dataset has a bad annotation, so the job trains from a cleaned copy of the COCO json: the
check runs once (machine 0) and every machine writes its copy in its own OUTPUT_DIR. The losses
and weights must equal the one-process run's with the same global batch; only machine 0 writes
checkpoints and metrics; a job resumes after one machine was killed and restarted empty."""
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.data.synthetic import write_shapes_coco

from helpers import (crash_machine_1_and_resume, detectron2_style, finish_machines, machine_folder,
                     machine_with_outputs, run_two_machines, start_machine, torchrun_style,
                     two_machine_folders)

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "train_det.py"
#: test_train_det_reliability.py's two-process job (2 images a step, one per process): every image
#: has as many RoIs, so that detectron2's per-process loss normalisation gives the one-process
#: sums; relative paths, resolved in each machine's folder.
OPTS = ["--config-file", REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml",
        "--dataset", "mn", "data/shapes/annotations.json", "data/shapes/images",
        "DATASETS.TRAIN", "('mn',)", "DATASETS.TEST", "('mn',)", "MODEL.DEVICE", "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES", 3, "INPUT.MIN_SIZE_TRAIN", "(128,)",
        "INPUT.MAX_SIZE_TRAIN", 160, "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 160,
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[32, 64, 128]]", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 300,
        "MODEL.PAPER_RESNET.NORM", "naiveSyncBN", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 100000,
        "MODEL.RPN.NMS_THRESH", 1.0, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 16,
        "MODEL.ROI_HEADS.IOU_THRESHOLDS", "[0.5]", "MODEL.ROI_HEADS.IOU_LABELS", "[0, 1]",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 100000, "DATALOADER.ASPECT_RATIO_GROUPING", False,
        "DATALOADER.NUM_WORKERS", 0, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.WARMUP_ITERS", 2,
        "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", 4, "SOLVER.BASE_LR", 0.002,
        "SOLVER.CHECKPOINT_PERIOD", 1, "TEST.EVAL_PERIOD", 0, "OUTPUT_DIR", "out"]
#: The bounds of test_train_det_reliability.py's two-process test: float32 round-off of a batch
#: split over two processes (BN statistics: 1e-3). MEASURED: the largest absolute difference of a
#: weight from the one-process run's, 9.4e-5, the same for both launchers and the resumed run
#: (2026-12-06, 2 cores, AMD EPYC; ``pytest -s`` prints it).
RTOL, RTOL_BN_STATS, ATOL = 1e-4, 1e-3, 1e-5


def _detectron2_style(port, rank, *extra):
    return detectron2_style(TOOL, port, rank, *extra, *OPTS)


def _torchrun(port, rank, *extra):
    return torchrun_style(TOOL, port, rank, *extra, *OPTS)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """4 images of 2 objects each, and a third annotation of image 1 with an empty box: bad,
    dropped from the training set (a cleaned copy of the json), so every image keeps 2."""
    folder = tmp_path_factory.mktemp("mn") / "shapes"
    json_file, _ = write_shapes_coco(folder, 4, image_size=(128, 160), num_classes=3,
                                     objects_per_image=(2, 2), seed=5)
    data = json.loads(Path(json_file).read_text())
    data["annotations"].append({**data["annotations"][0], "id": 1000, "bbox": [10, 10, 0, 0]})
    Path(json_file).write_text(json.dumps(data))
    return folder


def _losses(out: Path):
    """{iteration: total loss} of the lines of metrics.json."""
    rows = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    return {row["iteration"]: row["total_loss"] for row in rows if "total_loss" in row}


def _weights(out: Path):
    return load_checkpoint_file(out / "model_final.pth")["model"]


@pytest.fixture(scope="module")
def one_process(shapes, tmp_path_factory):
    """(losses, final weights) of the one-process run of the same job."""
    folder = machine_folder(tmp_path_factory.mktemp("single"), "m", shapes)
    [(code, err, out)] = finish_machines([start_machine([sys.executable, TOOL, *OPTS], folder)])
    assert code == 0, err[-3000:]
    assert "1 bad annotation skipped" in out + err, err[-3000:]
    return _losses(folder / "out"), _weights(folder / "out")


def _assert_equal_to(reference, main: Path, losses: bool = True) -> None:
    """Machine 0's final weights (and the losses it logged) are the one-process run's. A
    resumed run logs losses smoothed over the steps since it resumed: they are not compared."""
    reference_losses, weights = reference
    if losses:
        got = _losses(main / "out")
        assert got.keys() == reference_losses.keys() and got, (got, reference_losses)
        assert torch.allclose(torch.tensor(list(got.values())),
                              torch.tensor(list(reference_losses.values())), rtol=RTOL), (got, reference_losses)
    final = _weights(main / "out")
    assert final.keys() == weights.keys()
    for k in weights:
        rtol = RTOL_BN_STATS if k.endswith(("running_mean", "running_var")) else RTOL
        assert torch.allclose(final[k].float(), weights[k].float(), rtol=rtol, atol=ATOL), k
    largest = max((final[k].double() - weights[k].double()).abs().max().item() for k in weights)
    print(f"largest difference of a weight from the one-process run's: {largest:.2e}")


def _assert_wrote_only_its_own(other: Path) -> None:
    """The other machine wrote no checkpoint, metrics or results: only its own log and its own
    cleaned copy of the dataset's json (machine 0's is in machine 0's folder, not shared)."""
    files = sorted(str(p.relative_to(other / "out")) for p in (other / "out").rglob("*") if p.is_file())
    assert files == ["datasets/mn.json", "log.txt.rank1"], files


def test_two_machines_detectron2_flags_match_one_process(shapes, tmp_path, one_process):
    folders = two_machine_folders(tmp_path, shapes)
    outputs = run_two_machines(folders, _detectron2_style)
    main, other = machine_with_outputs(folders, "model_final.pth")
    assert main == folders[0]  # --machine-rank 0
    _assert_equal_to(one_process, main)
    _assert_wrote_only_its_own(other)
    assert json.loads((main / "out" / "results.json").read_text())["results"]["mn"]["bbox"]
    # the dataset check ran once, on machine 0: machine 1's cache stays empty
    assert list((main / "cache").rglob("*.json")) and not list((other / "cache").rglob("*"))
    assert "1 bad annotation skipped" in outputs[0]


def test_two_machines_torchrun_c10d_match_one_process(shapes, tmp_path, one_process):
    folders = two_machine_folders(tmp_path, shapes)
    run_two_machines(folders, _torchrun)
    main, other = machine_with_outputs(folders, "model_final.pth")
    _assert_equal_to(one_process, main)
    _assert_wrote_only_its_own(other)


@pytest.mark.slow
def test_resume_after_one_machine_was_killed(shapes, tmp_path, one_process):
    """Machine 1 is killed (SIGKILL: a crash) after machine 0 saved a checkpoint; machine 0 then
    stops with an error; both start again with --resume, machine 1 from an empty folder (no
    checkpoint, no cleaned json), and end with the one-process run's losses and weights."""
    folders, outputs = crash_machine_1_and_resume(tmp_path, shapes, _detectron2_style)
    started = re.search(r"Starting training from iteration (\d+)", outputs[0])
    assert started and 1 <= int(started.group(1)) <= 3, outputs[0][-3000:]
    _assert_equal_to(one_process, folders[0], losses=False)
    _assert_wrote_only_its_own(folders[1])


def test_dist_timeout_reaches_the_launcher(monkeypatch):
    """DIST_TIMEOUT_S (YAML) and train.dist_timeout_s (LazyConfig) are what ``launch`` waits for
    a machine that does not join (default 30 minutes); read before any process starts. How
    ``launch`` then names the missing machine is test_train_cls_multinode.py's never-joins test
    (the same function)."""
    from datetime import timedelta

    from resnet_backbone.cli import train_det

    seen = []
    monkeypatch.setattr(train_det, "launch", lambda *a, **kw: seen.append(kw["timeout"]))
    machines = ["--num-machines", "2", "--machine-rank", "0", "--dist-url", "tcp://127.0.0.1:1"]
    yaml = ["--config-file", str(REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml")]
    lazy = ["--config-file", str(REPO / "configs" / "detection" / "faster_rcnn_R_101_C4_voc0712.py")]
    for argv in ([*machines, *yaml, "DIST_TIMEOUT_S", "2"], [*machines, *lazy, "train.dist_timeout_s=3"],
                 [*machines, *yaml]):
        assert train_det.main(argv) == 0
    assert seen == [timedelta(seconds=2), timedelta(seconds=3), timedelta(minutes=30)]
