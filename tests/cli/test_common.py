"""What the tools share (``resnet_backbone.cli.common``). Both training tools refuse a malicious
``MODEL.WEIGHTS`` file (issue 8): run as a user would (a subprocess), each exits non-zero with a
message naming the file and the offending global, without a traceback (the common error
convention), and the payload never runs (its marker file is not written).

The loaders themselves are tested in ``tests/checkpoint/``; this checks that
``tools/train_cls.py`` and ``tools/train_det.py`` (through ``PaperDetectionCheckpointer``) read
weights only through them, for both a detectron2/MSRA-style ``.pkl`` and a ``torch.save`` ``.pth``.
"""
import functools
import os
import pickle

import pytest
import torch

from helpers import REPO, TOOL_THREADS, in_parallel, run_tool


def _cli_args(tool, shapes_coco):
    """The smallest runs that reach the weight loading: --eval-only on tiny data."""
    if tool == "train_cls":
        return ["--eval-only", "DATASETS.SYNTHETIC.NUM_TRAIN", "16", "DATASETS.SYNTHETIC.NUM_TEST",
                "8", "DATALOADER.NUM_WORKERS", "0", "PROGRESS_BAR", "False"]
    json_file, image_root = shapes_coco  # not the demo, which first writes 400 images
    return ["--config-file", str(REPO / "configs" / "detection" / "Demo-Shapes-R18-C4.yaml"),
            "--dataset", "shapes_tiny", str(json_file), str(image_root), "--eval-only",
            "DATASETS.TRAIN", "('shapes_tiny',)", "DATASETS.TEST", "('shapes_tiny',)",
            "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"]


class _RunsCode:
    """Unpickling it runs ``touch marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_weights(tmp_path, kind):
    marker = tmp_path / "PWNED"
    if kind == "pkl":  # detectron2 model-zoo layout, one entry replaced by the payload
        path = tmp_path / "model_final_f10217.pkl"
        with open(path, "wb") as f:
            pickle.dump({"model": {"backbone.res2.0.conv1.weight": _RunsCode(marker)},
                         "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f, 2)
    else:
        path = tmp_path / "model_final.pth"
        torch.save({"model": {"stem.conv1.weight": torch.zeros(1)}, "extra": _RunsCode(marker)},
                   path)
    return path, marker


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, shapes_coco):
    """{(tool, kind): (weights, marker, control ran the payload, tool process)}: for each tool
    and file kind, the malicious file, the control (an unrestricted load runs the payload), then
    the tool on it. The four tool runs are independent and end at the weight loading (mostly
    start-up): they start together."""
    cases = {}
    for tool in ("train_cls", "train_det"):
        for kind in ("pkl", "pth"):
            folder = tmp_path_factory.mktemp(f"{tool}_{kind}")
            weights, marker = _malicious_weights(folder, kind)
            with open(weights, "rb") as f:  # control: an unrestricted load runs the payload
                pickle.load(f) if kind == "pkl" else torch.load(f, weights_only=False)
            ran = marker.exists()
            if ran:
                marker.unlink()
            cases[tool, kind] = (weights, marker, ran, functools.partial(
                run_tool, tool, *_cli_args(tool, shapes_coco), "MODEL.WEIGHTS", weights,
                "OUTPUT_DIR", folder / "out", cwd=REPO, timeout=240, threads=TOOL_THREADS))
    procs = in_parallel(*(case[-1] for case in cases.values()), workers=len(cases))
    return {key: (*case[:-1], proc) for (key, case), proc in zip(cases.items(), procs)}


@pytest.mark.parametrize("kind", ["pkl", "pth"])
@pytest.mark.parametrize("tool", ["train_cls", "train_det"])
def test_cli_refuses_malicious_weights(refusals, tool, kind):
    weights, marker, control_ran_the_payload, proc = refusals[tool, kind]
    assert control_ran_the_payload
    assert proc.returncode != 0, proc.stdout[-2000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert f"Refusing to load {weights}" in last_line and "posix.system" in last_line, \
        proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists()


# --- an error raised in a DataLoader worker process: one line, the original message ------------

class _Raises(torch.utils.data.Dataset):
    def __init__(self, error):
        self.error = error

    def __len__(self):
        return 4

    def __getitem__(self, i):
        raise self.error


def _worker_error(dataset):
    """The exception torch re-raises from a DataLoader worker (DATALOADER.NUM_WORKERS 2). The
    workers are shut down here: an iterator left to the garbage collector (torch's re-raise
    makes a reference cycle) may be collected in a later forked worker, which then hangs."""
    import gc

    gc.collect()  # no such garbage in the workers forked now
    it = iter(torch.utils.data.DataLoader(dataset, num_workers=2, batch_size=1,
                                          collate_fn=lambda b: b))
    try:
        next(it)
    except Exception as e:  # noqa: BLE001 - what the tool gets
        return e
    finally:
        it._shutdown_workers()
    raise AssertionError("no error from the workers")


def test_user_error_from_a_dataloader_worker_is_one_line(tmp_path, capsys):
    """torch re-raises a worker's exception as "Caught X in DataLoader worker process N.\n
    Original Traceback ...": the tool prints only the original message (a corrupt JPEG read by
    one of DATALOADER.NUM_WORKERS 2)."""
    from resnet_backbone.cli.common import message, run_tool as run_tool_in_process
    from resnet_backbone.data.datasets import CorruptImageError, ImageFolderDataset
    from resnet_backbone.data.synthetic import make_synthetic, write_image_folder

    write_image_folder(tmp_path, "val", make_synthetic(2, num_classes=1))
    bad = sorted((tmp_path / "val").rglob("*.JPEG"))[0]
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    error = _worker_error(ImageFolderDataset(str(tmp_path), "val"))
    assert isinstance(error, CorruptImageError) and "in DataLoader worker process" in str(error)

    def body():
        raise error

    assert run_tool_in_process(body) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot read image {bad}: cannot identify image file '{bad}'. Remove or "
                   "replace the file, or set DATALOADER.SKIP_CORRUPT True to skip such files\n")
    # a KeyError's message keeps no quotes; a multi-line one stays whole
    for raised, text in [(KeyError("no such key"), "no such key"),
                         (ValueError("first line\n  second line"), "first line\n  second line")]:
        error = _worker_error(_Raises(raised))
        assert type(error) is type(raised) and message(error) == text


def test_ctrl_c_and_a_stop_on_request_end_in_one_line_with_128_plus_the_signal(capsys):
    import signal

    from resnet_backbone.cli.common import run_tool as run_body
    from resnet_backbone.stopping import RunStopped

    def interrupted():
        raise KeyboardInterrupt

    assert run_body(interrupted) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted (Ctrl-C)") and "--resume" in err[0], err

    def stopped():
        raise RunStopped("stopped by SIGTERM after iteration 3: saved x", signal.SIGTERM)

    assert run_body(stopped) == 143
    assert capsys.readouterr().err.strip() == "stopped by SIGTERM after iteration 3: saved x"
