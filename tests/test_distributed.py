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


# --- SLURM: srun's variables read as torchrun's --------------------------------------------------

SRUN_TASK_1 = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
               "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_TASKS_PER_NODE": "4(x2)"}


def test_slurm_env_maps_srun_variables_to_torchrun_ones():
    from resnet_backbone.distributed import SLURM_DEFAULT_PORT, slurm_env

    assert slurm_env(SRUN_TASK_1) == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1",
        "MASTER_ADDR": "gpu07", "MASTER_PORT": str(SLURM_DEFAULT_PORT)}
    # MASTER_ADDR / MASTER_PORT given win; the step's task count wins over the job's
    given = slurm_env({**SRUN_TASK_1, "MASTER_ADDR": "head", "MASTER_PORT": "1234",
                       "SLURM_STEP_NUM_TASKS": "4"})
    assert (given["MASTER_ADDR"], given["MASTER_PORT"], given["WORLD_SIZE"]) == ("head", "1234", "4")


def test_slurm_env_leaves_one_task_and_torchrun_alone():
    from resnet_backbone.distributed import slurm_env

    assert slurm_env({}) is None
    assert slurm_env({**SRUN_TASK_1, "SLURM_NTASKS": "1"}) is None  # an sbatch script, salloc
    assert slurm_env({**SRUN_TASK_1, "RANK": "0", "WORLD_SIZE": "2"}) is None  # torchrun's


def test_first_host_of_slurm_node_lists():
    from resnet_backbone.distributed import first_host

    assert first_host("node[03-05,7],gpu1") == "node03"
    assert first_host("a1,b2") == "a1"
    assert first_host("host") == "host"
    assert first_host("rack[2-3]-n[1-4],x") == "rack2-n1"


_SRUN_TASK = """
import torch, torch.distributed as dist
from resnet_backbone.distributed import adopt_slurm_env, get_machine_rank, launch
assert adopt_slurm_env()
def main():
    t = torch.tensor([dist.get_rank() + 1.0])
    dist.all_reduce(t)
    print(dist.get_rank(), dist.get_world_size(), get_machine_rank(), int(t.item()))
launch(main, 1)
"""


def test_two_tasks_with_srun_variables_form_one_job(tmp_path):
    """Two processes given the variables srun sets (by hand, on this host) join one job."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    procs = [subprocess.Popen([sys.executable, "-c", _SRUN_TASK], text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              env={**env, "SLURM_PROCID": str(r), "SLURM_NTASKS": "2",
                                   "SLURM_LOCALID": "0", "SLURM_NODEID": str(r),
                                   "SLURM_JOB_NODELIST": "127.0.0.1", "MASTER_PORT": str(port),
                                   "SLURM_TASKS_PER_NODE": "1(x2)", "OMP_NUM_THREADS": "1"})
             for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.split() for o, _ in outs] == [["0", "2", "0", "3"], ["1", "2", "1", "3"]]
