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
