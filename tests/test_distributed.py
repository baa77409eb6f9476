"""Multi-process launching (``resnet_backbone.distributed``): a dead worker stops the job with a
message."""
import os
import signal
import time


def _die_on_rank_1():
    import torch.distributed as dist

    if dist.get_rank() == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.barrier()  # rank 0 waits for a peer that is gone


def test_dead_worker_stops_the_job_with_a_message():
    from datetime import timedelta

    import pytest

    from resnet_backbone.distributed import WorkerFailedError, launch

    start = time.time()
    with pytest.raises(WorkerFailedError, match="worker process (1 stopped with signal SIGKILL|0 raised an error)"):
        launch(_die_on_rank_1, 2, timeout=timedelta(seconds=30))
    assert time.time() - start < 120


def _first_fails_then_all_report(out_dir):
    """The first process's check fails; every process must leave with that error, not wait."""
    import torch.distributed as dist

    from resnet_backbone.distributed import first_then_others

    calls = []

    def check():
        calls.append(dist.get_rank())
        raise ValueError("bad data")

    try:
        first_then_others(check)
    except ValueError as e:
        with open(os.path.join(out_dir, f"rank{dist.get_rank()}"), "w") as f:
            f.write(f"{e} {calls}")
    dist.barrier()  # both reached here: nobody was left at the first barrier


def test_first_then_others_runs_the_first_process_first_and_shares_its_failure(tmp_path):
    from datetime import timedelta

    from resnet_backbone.distributed import launch

    start = time.time()
    launch(_first_fails_then_all_report, 2, args=(str(tmp_path),), timeout=timedelta(seconds=60))
    assert (tmp_path / "rank0").read_text() == "bad data [0]"  # rank 0 ran it first
    assert (tmp_path / "rank1").read_text() == "bad data [1]"  # rank 1 ran it after the barrier
    assert time.time() - start < 60
