"""The silent failures of tools/train_det.py, caught before training starts or said in one line:
a FrozenBN backbone without statistics, pre-trained weights that do not fit the backbone, bad
datasets, a bad OUTPUT_DIR, a loss that diverges; and what survives a crash: exact resume after
SIGKILL, and several CPU processes training as one."""
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from resnet_backbone.checkpoint import load_checkpoint_file
from resnet_backbone.data.synthetic import write_shapes_coco

from helpers import TOOL_THREADS, in_parallel, write_synthetic_imagenet

REPO = Path(__file__).resolve().parents[2]
TRAIN_CLS, TRAIN_DET = REPO / "tools" / "train_cls.py", REPO / "tools" / "train_det.py"
C4 = REPO / "configs" / "detection" / "Base-PaperRCNN-C4.yaml"
#: Small images, few RoIs and proposals (depth-independent sizes only).
TINY = ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "128",
        "INPUT.MAX_SIZE_TEST", "160", "MODEL.ANCHOR_GENERATOR.SIZES", "[[32, 64, 128]]",
        "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "300", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "32",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
        "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()"]


def run(tool, *args, env=None, timeout=600):
    return subprocess.run([sys.executable, str(tool), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": str(TOOL_THREADS), **(env or {})})


def last_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def assert_user_error(proc, *words):
    """Exit status 2, one ``error:`` line on stderr, no traceback."""
    line = last_line(proc)
    assert proc.returncode == 2 and line.startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for w in words:
        assert w in line, line


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A COCO-format train set of 8 images."""
    return write_shapes_coco(tmp_path_factory.mktemp("rel_shapes"), 8, image_size=(128, 160),
                             num_classes=3, seed=3)


def with_dataset(shapes, *opts):
    return ["--dataset", "rel_train", *shapes, *TINY, "DATASETS.TRAIN", "('rel_train',)", *opts]


# ------------------------------------------------------------------------- FrozenBN, weights

def test_frozen_bn_from_scratch_is_refused(shapes, tmp_path):
    proc = run(TRAIN_DET, "--config-file", C4, *with_dataset(shapes, "MODEL.PAPER_RESNET.DEPTH", 18,
                                                             "MODEL.WEIGHTS", "", "OUTPUT_DIR", tmp_path))
    assert_user_error(proc, "MODEL.WEIGHTS is empty, but the backbone's norms are FrozenBN",
                      "MODEL.PAPER_RESNET.NORM BN", "FREEZE_AT 0")


def test_weights_missing_backbone_statistics_are_refused(shapes, tmp_path):
    from resnet_backbone import build_resnet
    sd = build_resnet(18, out_features=["res5"]).state_dict()
    partial = {k: v for k, v in sd.items() if not k.startswith("res4.")}  # res4 lost
    torch.save({"model": partial, "matching_heuristics": True}, tmp_path / "partial.pth")
    proc = run(TRAIN_DET, "--config-file", C4, *with_dataset(
        shapes, "MODEL.PAPER_RESNET.DEPTH", 18, "MODEL.WEIGHTS", tmp_path / "partial.pth",
        "OUTPUT_DIR", tmp_path / "out"))
    assert_user_error(proc, "partial.pth does not provide", "backbone.res4.0", "FrozenBN")


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory):
    return write_synthetic_imagenet(tmp_path_factory.mktemp("rel_imagenet"), 48, 6, (48, 40), (48, 40))


@pytest.mark.slow
@pytest.mark.parametrize("depth, recipe", [(18, "resnet18.yaml"), (50, "resnet50.yaml")])
def test_pretrain_export_finetune_chain_needs_no_overrides(depth, recipe, imagenet_folder,
                                                           shapes, tmp_path):
    """train_cls (the ImageNet recipe: option A for ResNet-18, B for ResNet-50) -> export ->
    train_det with the paper's C4 config (SHORTCUT B, BGR caffe means by default), nothing set
    by hand: the weights' meta sets the shortcut, stride placement, format and pixel stats and
    every backbone weight loads. The FrozenBN fine-tuning of ResNet-18 stays finite (measured
    losses ~1, default and AVX2 kernels). ResNet-50's BN statistics from 40 batches of 32-pixel
    crops do not fit 128-pixel detection images (the tool warns): its first loss measured 2.8
    to 6,643 with the same seed on one Intel CPU, and some runs diverge. Either outcome is
    allowed for it: training on, or the tool's one-line divergence error naming FrozenBN
    statistics, never a traceback."""
    pre = run(TRAIN_CLS, "--config-file", REPO / "configs" / "classification" / "imagenet" / recipe,
              "DATASETS.ROOT", imagenet_folder, "MODEL.NUM_CLASSES", 3, "INPUT.TRAIN_SCALE", "[36, 48]",
              "INPUT.CROP_SIZE", 32, "TEST.RESIZE", 36, "TEST.CROP_SIZE", 32, "SOLVER.IMS_PER_BATCH", 8,
              "SOLVER.MAX_ITER", 40, "TEST.EVAL_PERIOD", 40, "TEST.FINAL_MODES", "['center']",
              "DATALOADER.NUM_WORKERS", 0, "PROGRESS_BAR", False, "OUTPUT_DIR", tmp_path / "cls")
    assert pre.returncode == 0, pre.stderr[-3000:]
    export = run(REPO / "tools" / "export_backbone.py", tmp_path / "cls" / "model_final.pth",
                 tmp_path / "backbone.pth")
    shortcut = "A" if depth == 18 else "B"
    assert export.returncode == 0 and f"shortcut {shortcut}" in export.stdout, export.stderr
    det = run(TRAIN_DET, "--config-file", C4, *with_dataset(
        shapes, "MODEL.PAPER_RESNET.DEPTH", depth, "MODEL.WEIGHTS", tmp_path / "backbone.pth",
        "SOLVER.MAX_ITER", 4, "SOLVER.BASE_LR", 0.002, "OUTPUT_DIR", tmp_path / "det"))
    log = det.stdout + det.stderr
    if depth == 50 and det.returncode != 0:
        assert_user_error(det, "the training loss is NaN or infinite", "FrozenBN statistics")
    else:
        assert det.returncode == 0, log[-3000:]
    assert (f"Set MODEL.PAPER_RESNET.SHORTCUT '{shortcut}'" in log) == (shortcut == "A")
    assert "Set INPUT.FORMAT 'RGB'" in log and "Set MODEL.PIXEL_MEAN [" in log
    assert "come from only 40 training batches" in log  # and that they may not suffice
    missing = [line for line in log.splitlines() if re.search(r"\| missing\s+\| (backbone|roi_heads\.res5)", line)]
    assert missing == []
    if depth == 18:
        losses = [json.loads(x)["total_loss"] for x in
                  (tmp_path / "det" / "metrics.json").read_text().splitlines() if "total_loss" in x]
        assert losses and all(torch.isfinite(torch.tensor(losses))), losses


def test_weights_of_another_depth_or_an_explicit_conflict_stop_with_the_override(shapes, tmp_path):
    from resnet_backbone.checkpoint import save_checkpoint_atomic
    meta = {"model_name": "resnet18", "depth": 18, "cifar": False, "residual": True,
            "shortcut": "A", "stride_in_1x1": True, "norm": "BN", "input_format": "RGB",
            "pixel_mean": [120.0, 115.0, 100.0], "pixel_std": [1.0, 1.0, 1.0], "bn_batches": 500}
    from resnet_backbone import build_resnet
    sd = build_resnet(18, shortcut="A", out_features=["res5"]).state_dict()
    save_checkpoint_atomic({"model": sd, "matching_heuristics": True, "meta": meta}, tmp_path / "r18.pth")
    common = with_dataset(shapes, "MODEL.WEIGHTS", tmp_path / "r18.pth", "OUTPUT_DIR", tmp_path / "o")
    depth, shortcut = in_parallel(  # two independent runs
        lambda: run(TRAIN_DET, "--config-file", C4, *common),  # the config's depth: 101
        lambda: run(TRAIN_DET, "--config-file", C4, *common, "MODEL.PAPER_RESNET.DEPTH", 18,
                    "MODEL.PAPER_RESNET.SHORTCUT", "B"))
    assert_user_error(depth, "ResNet-18, the config says MODEL.PAPER_RESNET.DEPTH 101",
                      "set MODEL.PAPER_RESNET.DEPTH 18")
    assert_user_error(shortcut, "trained with SHORTCUT 'A'", "set MODEL.PAPER_RESNET.SHORTCUT 'A'")


# ----------------------------------------------------------------------------------- datasets

def write_coco(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_bad_annotations_are_listed_and_skipped_or_refused_when_strict(shapes, tmp_path):
    data = json.loads(Path(shapes[0]).read_text())
    data["annotations"][0]["bbox"][2] = -5.0  # negative width
    data["annotations"][1]["bbox"] = [1000.0, 1000.0, 10.0, 10.0]  # outside its 160x128 image
    data["annotations"][2]["category_id"] = 9  # not declared
    bad = write_coco(tmp_path / "bad.json", data)
    opts = ["--config-file", REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml",
            "--dataset", "rel_bad", bad, shapes[1], *TINY, "DATASETS.TRAIN", "('rel_bad',)",
            "SOLVER.MAX_ITER", 1]
    proc, strict = in_parallel(  # two independent runs
        lambda: run(TRAIN_DET, *opts, "OUTPUT_DIR", tmp_path / "skip"),
        lambda: run(TRAIN_DET, *opts, "DATASETS.STRICT", True, "OUTPUT_DIR", tmp_path / "strict"))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Dataset 'rel_bad': 3 problems" in log and "3 bad annotations skipped" in log
    assert "box width -5 / height" in log and "lies outside its 160x128 image" in log
    assert "category id 9 is not declared" in log
    cleaned = json.loads((tmp_path / "skip" / "datasets" / "rel_bad.json").read_text())
    assert len(cleaned["annotations"]) == len(data["annotations"]) - 3
    assert_user_error(strict, "dataset 'rel_bad' has 3 problems", "DATASETS.STRICT False")


#: Damaged annotation files (a change to the json, or its first 200 characters) and the words
#: of the error each must give.
UNUSABLE_JSON = [
    (lambda d: d.pop("images"), "has no 'images' list"),
    (lambda d: d.update(annotations=[]), "'annotations' is empty"),
    ("truncated", "is not valid JSON"),
]


@pytest.fixture(scope="module")
def unusable_json_runs(shapes, tmp_path_factory):
    """{words: (damaged file, train_det process)} for each of UNUSABLE_JSON; the three runs
    are independent and end in start-up: they start together."""
    attempts = []
    for damage, words in UNUSABLE_JSON:
        folder = tmp_path_factory.mktemp("rel_json")
        path = folder / "ann.json"
        if damage == "truncated":
            path.write_text(Path(shapes[0]).read_text()[:200])
        else:
            data = json.loads(Path(shapes[0]).read_text())
            damage(data)
            write_coco(path, data)
        attempts.append((words, path, functools.partial(
            run, TRAIN_DET, "--config-file", C4, "--dataset", "rel_json", path, shapes[1], *TINY,
            "DATASETS.TRAIN", "('rel_json',)", "MODEL.PAPER_RESNET.DEPTH", 18, "OUTPUT_DIR", folder / "o")))
    procs = in_parallel(*(call for _, _, call in attempts), workers=len(attempts))
    return {words: (path, proc) for (words, path, _), proc in zip(attempts, procs)}


@pytest.mark.parametrize("damage, words", UNUSABLE_JSON)
def test_unusable_coco_json_names_the_file_and_the_key(unusable_json_runs, damage, words):
    path, proc = unusable_json_runs[words]
    assert_user_error(proc, str(path), words)


def test_output_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "out").write_text("")
    for proc in in_parallel(*(functools.partial(run, tool, "OUTPUT_DIR", tmp_path / "out")
                              for tool in (TRAIN_DET, TRAIN_CLS))):
        assert_user_error(proc, "is a file, not a folder")


# -------------------------------------------------------------------------- divergence

def test_diverging_loss_stops_in_one_line_and_keeps_the_last_checkpoint(shapes, tmp_path):
    proc = run(TRAIN_DET, "--config-file", REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml",
               *with_dataset(shapes, "SOLVER.BASE_LR", 1e4, "SOLVER.WARMUP_ITERS", 0,
                             "SOLVER.MAX_ITER", 12, "SOLVER.CHECKPOINT_PERIOD", 1,
                             "OUTPUT_DIR", tmp_path))
    line = last_line(proc)
    match = re.search(r"loss is NaN or infinite at iteration (\d+) \(lr 10000\)", line)
    assert proc.returncode == 2 and match and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Likely causes: SOLVER.BASE_LR too high" in line
    last = (tmp_path / "last_checkpoint").read_text()
    assert f"last good checkpoint is {tmp_path / last}" in line
    weights = load_checkpoint_file(tmp_path / last)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


# ------------------------------------------------------------------------ exact resume, DDP

DETERMINISTIC = ["SOLVER.MAX_ITER", 12, "SOLVER.CHECKPOINT_PERIOD", 3, "SEED", 7]


def _final_weights(out: Path):
    return load_checkpoint_file(out / "model_final.pth")["model"]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(shapes, tmp_path):
    """Killed while writing a checkpoint, at another moment, and stopped by SIGTERM (which saves
    the step it ends); each resumed run ends with the uninterrupted run's weights, bit for bit
    (one thread: the same order of float sums). The uninterrupted run and the three cases are
    independent one-thread processes: they run two at a time, one a core."""
    opts = ["--config-file", REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml",
            *with_dataset(shapes, *DETERMINISTIC)]
    env = {"OMP_NUM_THREADS": "1"}

    def uninterrupted():
        full = run(TRAIN_DET, *opts, "OUTPUT_DIR", tmp_path / "full", env=env)
        assert full.returncode == 0, full.stderr[-3000:]
        return _final_weights(tmp_path / "full")

    def writing_model_5(d: Path) -> bool:
        return any(d.glob(".model_0000005.pth.*.tmp")) and not (d / "model_0000005.pth").exists()

    def interrupted_then_resumed(case, ready):
        out = tmp_path / case
        out.mkdir()
        proc = subprocess.Popen([sys.executable, str(TRAIN_DET), *map(str, opts), "OUTPUT_DIR", str(out)],
                                cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not ready(out) and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.005)
        if case == "sigterm":  # what a scheduler sends: a checkpoint of the step, a line, 143
            proc.send_signal(signal.SIGTERM)
            stderr = proc.communicate(timeout=120)[1]
            line = stderr.strip().splitlines()[-1]
            match = re.fullmatch(r"stopped by SIGTERM after iteration (\d+): saved (\S+); continue "
                                 r"with the same command and --resume", line)
            assert proc.returncode == 143 and match and "Traceback" not in stderr, stderr[-3000:]
            stopped_at = int(match.group(1))
            assert match.group(2) == str(out / f"model_{stopped_at - 1:07d}.pth")
            assert (out / "last_checkpoint").read_text() == f"model_{stopped_at - 1:07d}.pth"
            assert 3 <= stopped_at < 12 and not (out / "inference").exists()  # not evaluated
        else:
            proc.send_signal(signal.SIGSTOP)  # frozen: what is on disk now is what the kill leaves
            if case == "during_write":  # the kill lands inside the write, not after it
                assert writing_model_5(out), "the checkpoint write ended before the kill; not the case tested"
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        assert not (out / "model_final.pth").exists(), f"{case}: the run ended before the kill"
        resumed = run(TRAIN_DET, "--resume", *opts, "OUTPUT_DIR", out, env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "Starting training from iteration 0" not in resumed.stdout + resumed.stderr, case
        assert not list(out.glob(".*.tmp")), case  # the killed write's temporary file removed
        iterations = [json.loads(x)["iteration"] for x in (out / "metrics.json").read_text().splitlines()]
        assert iterations == sorted(set(iterations)), (case, iterations)  # no line twice
        return _final_weights(out)

    cases = {"during_write": writing_model_5,
             "between_checkpoints": lambda d: (d / "model_0000002.pth").exists(),
             "sigterm": lambda d: (d / "model_0000002.pth").exists()}
    expected, *resumed = in_parallel(uninterrupted, *(
        functools.partial(interrupted_then_resumed, case, ready) for case, ready in cases.items()))
    for case, got in zip(cases, resumed):
        for k in expected:
            assert torch.equal(got[k], expected[k]), (case, k)


@pytest.mark.slow
def test_two_cpu_processes_train_as_one(tmp_path_factory, tmp_path):
    """--num-gpus 2 on a CPU machine (gloo): the same global batch of 2 images, one per process,
    gives the one-process run's losses and weights. detectron2 normalises the RoI losses by the
    RoIs of a process, so the runs compute the same sums only if every image has as many RoIs:
    2 objects per image, 16 proposals per image (no NMS), every RoI labelled (none ignored),
    every anchor and RoI used (no random sampling), and BN synced. They then differ by float rounding only (tolerance 1e-4)."""
    data = write_shapes_coco(tmp_path_factory.mktemp("rel_two"), 4, image_size=(128, 160),
                             num_classes=3, objects_per_image=(2, 2), seed=5)
    opts = ["--config-file", REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml",
            "--dataset", "rel_two", *data, *TINY, "DATASETS.TRAIN", "('rel_two',)",
            "MODEL.PAPER_RESNET.NORM", "naiveSyncBN", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 100000,
            "MODEL.RPN.NMS_THRESH", 1.0, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 16,
            "MODEL.ROI_HEADS.IOU_THRESHOLDS", "[0.5]", "MODEL.ROI_HEADS.IOU_LABELS", "[0, 1]",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 100000, "DATALOADER.ASPECT_RATIO_GROUPING", False,
            "SOLVER.MAX_ITER", 4, "SOLVER.BASE_LR", 0.002, "SOLVER.CHECKPOINT_PERIOD", 100]
    outs = {n: tmp_path / f"p{n}" for n in (1, 2)}
    for proc in in_parallel(*(functools.partial(  # independent runs, started together
            run, TRAIN_DET, "--num-gpus", n, *opts, "OUTPUT_DIR", outs[n], env={"OMP_NUM_THREADS": "1"})
            for n in (1, 2))):
        assert proc.returncode == 0, proc.stderr[-3000:]
    losses = {n: [json.loads(x)["total_loss"] for x in (out / "metrics.json").read_text().splitlines()
                  if "total_loss" in x] for n, out in outs.items()}
    assert len(losses[1]) == len(losses[2]) > 0
    assert torch.allclose(torch.tensor(losses[1]), torch.tensor(losses[2]), rtol=1e-4), losses
    one, two = _final_weights(outs[1]), _final_weights(outs[2])
    assert one.keys() == two.keys()
    for k in one:
        rtol = 1e-3 if k.endswith(("running_mean", "running_var")) else 1e-4
        assert torch.allclose(one[k].float(), two[k].float(), rtol=rtol, atol=1e-5), k
