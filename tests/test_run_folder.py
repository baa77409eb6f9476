"""An output folder belongs to one run: the lock, stale-lock recovery, no silent overwrite,
interrupted writes cleaned, and what a resume may change (resnet_backbone.run_folder); the
tools' refusals are checked through train_cls and train_det in-process (they stop before any
data is read)."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from resnet_backbone.run_folder import (OutputDirError, changed_settings, check_resume_config,
                                        claim_output_dir, claim_run, release_output_dir)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _holder(folder):
    """A process that claims ``folder`` and waits (the lock is per process: a test cannot take
    it from itself)."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {REPO!r})
        from resnet_backbone.run_folder import claim_output_dir
        claim_output_dir({str(folder)!r}, resume=False)
        print("claimed", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_second_run_is_refused_until_the_first_dies_then_the_lock_is_taken(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(OutputDirError, match=rf"OUTPUT_DIR {tmp_path} is in use by another run "
                                                 rf"\(pid {proc.pid} on .+, started .+\); wait"):
            claim_output_dir(str(tmp_path), resume=True)
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: no clean-up of its own
        proc.wait()
    claim_output_dir(str(tmp_path), resume=True)  # the kernel released the dead run's lock
    try:
        assert f"pid {os.getpid()}" in (tmp_path / ".run.lock").read_text()
    finally:
        release_output_dir(str(tmp_path))


def _started_run(folder):
    for name in ("model_0000004.pth", "model_final.pth", "last_checkpoint", "metrics.json"):
        (folder / name).write_text("x")
    (folder / "data").mkdir()
    (folder / "data" / "train.json").write_text("{}")  # not a run file: a demo's generated data
    (folder / ".model_0000009.pth.abcd1234.tmp").write_text("torn")  # a write killed midway


def test_a_started_run_is_continued_or_overwritten_only_when_asked(tmp_path):
    _started_run(tmp_path)
    try:
        with pytest.raises(OutputDirError, match="already holds a training run .*last_checkpoint.*"
                                                 "continue it with --resume, start it over with --overwrite"):
            claim_output_dir(str(tmp_path), resume=False)
        assert (tmp_path / "model_final.pth").exists()
        with pytest.raises(OutputDirError, match="give one of them"):
            claim_output_dir(str(tmp_path), resume=True, overwrite=True)
        claim_output_dir(str(tmp_path), resume=True)  # continues: nothing of the run deleted
        assert (tmp_path / "model_0000004.pth").exists()
        assert not list(tmp_path.glob(".*.tmp"))  # but the torn temporary file is gone
        claim_output_dir(str(tmp_path), resume=False, overwrite=True)
        assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "data"]
        assert (tmp_path / "data" / "train.json").exists()
    finally:
        release_output_dir(str(tmp_path))


def test_eval_only_claims_nothing_and_refuses_nothing(tmp_path):
    _started_run(tmp_path)
    claim_output_dir(str(tmp_path), resume=False, eval_only=True)
    assert not (tmp_path / ".run.lock").exists() and (tmp_path / "model_final.pth").exists()


OLD = "MODEL:\n  DEPTH: 50\n  WEIGHTS: a.pth\nSOLVER:\n  IMS_PER_BATCH: 8\n  MAX_ITER: 100\nTAGS: !!python/tuple [1, 2]\n"


def test_a_resume_may_not_change_the_network_or_the_batch_and_says_what_else_changed(tmp_path, caplog):
    assert changed_settings(OLD, OLD) == []
    longer = OLD.replace("MAX_ITER: 100", "MAX_ITER: 200").replace("a.pth", "b.pth")
    check_resume_config(str(tmp_path), OLD, longer, fixed=["MODEL", "SOLVER.IMS_PER_BATCH"],
                        free=["MODEL.WEIGHTS"])
    assert "SOLVER.MAX_ITER 100 -> 200" in caplog.text and "MODEL.WEIGHTS 'a.pth' -> 'b.pth'" in caplog.text
    for change, key in (("IMS_PER_BATCH: 8", "SOLVER.IMS_PER_BATCH: 8 in the run, 16 now"),
                        ("DEPTH: 50", "MODEL.DEPTH: 50 in the run, 18 now")):
        new = OLD.replace(change, change.split(":")[0] + (": 16" if "BATCH" in change else ": 18"))
        with pytest.raises(OutputDirError, match=rf"--resume into {tmp_path} with settings its "
                                                 rf"checkpoint cannot continue \({key}; .*start a new run"):
            check_resume_config(str(tmp_path), OLD, new, fixed=["MODEL", "SOLVER.IMS_PER_BATCH"],
                                free=["MODEL.WEIGHTS"])


def test_a_refused_resume_keeps_the_runs_config(tmp_path):
    (tmp_path / "config.yaml").write_text(OLD)
    (tmp_path / "last_checkpoint").write_text("model_0000004.pth")
    try:
        with pytest.raises(OutputDirError):
            claim_run(str(tmp_path), resume=True, overwrite=False, eval_only=False,
                      write_config=lambda p: open(p, "w").write(OLD.replace("DEPTH: 50", "DEPTH: 18")),
                      fixed=["MODEL"])
        assert (tmp_path / "config.yaml").read_text() == OLD
    finally:
        release_output_dir(str(tmp_path))


# -- through the tools --------------------------------------------------------------------------


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def test_train_cls_refuses_a_folder_holding_a_run_and_a_resume_with_another_batch(tmp_path, capsys):
    from resnet_backbone.cli import train_cls

    _started_run(tmp_path)
    assert train_cls.main(["OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "2"]) == 2
    assert "already holds a training run" in _one_error_line(capsys)
    (tmp_path / "config.yaml").write_text("SOLVER:\n  IMS_PER_BATCH: 8\n")
    release_output_dir(str(tmp_path))
    assert train_cls.main(["--resume", "OUTPUT_DIR", str(tmp_path), "SOLVER.IMS_PER_BATCH", "16"]) == 2
    assert "SOLVER.IMS_PER_BATCH: 8 in the run, 16 now" in _one_error_line(capsys)
    release_output_dir(str(tmp_path))


def test_train_det_refuses_a_folder_in_use(tmp_path, capsys):
    from resnet_backbone.cli import train_det

    proc = _holder(tmp_path)
    try:
        rc = train_det.main(["--config-file", os.path.join(REPO, "configs", "detection", "Demo-Shapes-R18-C4.yaml"),
                             "MODEL.DEVICE", "cpu", "OUTPUT_DIR", str(tmp_path)])
        assert rc == 2 and f"is in use by another run (pid {proc.pid}" in _one_error_line(capsys)
    finally:
        proc.kill()
        proc.wait()


def test_train_det_refuses_a_resume_with_another_depth(tmp_path, capsys):
    from resnet_backbone.cli import train_det
    from resnet_backbone.detection import get_detection_cfg

    config = os.path.join(REPO, "configs", "detection", "Demo-Shapes-R18-C4.yaml")
    (tmp_path / "config.yaml").write_text(
        get_detection_cfg(config, ["MODEL.PAPER_RESNET.DEPTH", "50", "OUTPUT_DIR", str(tmp_path)]).dump())
    (tmp_path / "last_checkpoint").write_text("model_0000004.pth")
    try:
        rc = train_det.main(["--config-file", config, "--resume", "MODEL.DEVICE", "cpu",
                             "OUTPUT_DIR", str(tmp_path)])
        line = _one_error_line(capsys)
        assert rc == 2 and "MODEL.PAPER_RESNET.DEPTH: 50 in the run, 18 now" in line, line
        assert "DEPTH: 50" in (tmp_path / "config.yaml").read_text()  # the run's config kept
    finally:
        release_output_dir(str(tmp_path))
