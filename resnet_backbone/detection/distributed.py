"""detectron2's per-machine process group, for jobs started by ``resnet_backbone.distributed.launch``
(the one launcher of both tools): detectron2's trainer asks ``comm.get_local_rank()`` which GPU
its DistributedDataParallel runs on, and that needs the group detectron2's own ``launch`` makes.
"""
import torch.distributed as dist


def setup_detectron2_comm(processes_per_machine: int) -> None:
    """Create detectron2's per-machine process group in this process (all processes call it)."""
    from detectron2.utils import comm

    if hasattr(comm, "create_local_process_group"):  # detectron2 main
        comm.create_local_process_group(processes_per_machine)
        return
    # detectron2 v0.6 has no function for it: its launch() sets this module attribute.
    machine = dist.get_rank() // processes_per_machine
    for i in range(dist.get_world_size() // processes_per_machine):
        group = dist.new_group(list(range(i * processes_per_machine, (i + 1) * processes_per_machine)))
        if i == machine:
            comm._LOCAL_PROCESS_GROUP = group
