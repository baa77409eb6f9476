"""Multi-process launch like detectron2's ``launch`` that also works without GPUs, the rank
helpers every layer of the package uses (thin ``torch.distributed`` queries; detectron2's own
``comm`` reads the same process group), and the two device rules both trainers share:
``wrap_ddp`` (DistributedDataParallel with ``device_ids`` only for a CUDA model: a CPU model
under gloo takes none) and ``cpu_if_no_cuda`` (a CUDA device asked for on a machine without one
runs on the CPU, said in one line).

detectron2 v0.6's ``launch`` asserts CUDA when it starts more than one process; this one picks
NCCL when CUDA is available and gloo otherwise, so ``--num-gpus 2`` runs two CPU processes.
Collectives time out after ``timeout`` so a dead or stuck worker stops the job with a message
instead of hanging it. Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment)
the process group is initialised from the environment and nothing is spawned; under ``srun``
(``SLURM_PROCID`` ...) ``adopt_slurm_env`` first sets those variables the way torchrun would.

Several machines need no shared filesystem: what one process computes or reads (a mean image,
a dataset's verdict, a checkpoint) reaches the others through ``computed_once`` (a broadcast).
A machine that does not join a ``--dist-url tcp://`` job within ``timeout`` is named in one
line (``MachineMissingError``).
"""
import os
import pickle
import random
import re
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from .stopping import RunStopped

DEFAULT_TIMEOUT = timedelta(minutes=30)


class WorkerFailedError(RuntimeError):
    """A worker process of a multi-process job exited with an error or was killed."""


class MachineMissingError(WorkerFailedError):
    """A machine of a multi-machine job did not join (or machine 0 could not be reached)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def get_machine_rank() -> int:
    """This process's machine: torchrun's GROUP_RANK, else its rank over the processes per
    machine (LOCAL_WORLD_SIZE, which ``launch`` and torchrun set)."""
    if "GROUP_RANK" in os.environ:
        return int(os.environ["GROUP_RANK"])
    return get_rank() // max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)


def is_main_process() -> bool:
    return get_rank() == 0


def synchronize() -> None:
    if get_world_size() > 1:
        dist.barrier()


def first_then_others(fn: Callable[[], Any]) -> Any:
    """``fn()`` in the first process of each machine, then, after a barrier, in the others, which
    find what it cached (a dataset check's verdicts). When the first one raises, the barrier is
    still met (nobody waits for a process that has left it) and the error raised there."""
    first = get_local_rank() == 0
    result, error = None, None
    if first:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - raised again below, after the barrier
            error = e
    synchronize()
    if error is not None:
        raise error
    return result if first else fn()


def computed_once(fn: Callable[[], Any]) -> Any:
    """``fn()`` in process 0 only, its result (picklable) broadcast to every process: what a
    machine computes or reads from its own disk, shared without a shared filesystem. When
    ``fn`` raises there, every process raises that error (nobody waits for a result)."""
    box: List[Any] = [None, None]
    if get_rank() == 0:
        try:
            box[0] = fn()
        except Exception as e:  # noqa: BLE001 - raised again below, in every process
            box[1] = _picklable(e)
    if get_world_size() > 1:
        dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        raise box[1]
    return box[0]


def machines_that_differ(value: Callable[[], Any]) -> List[int]:
    """The machines whose processes compute another picklable ``value()`` than process 0 (the
    digest of a dataset file every machine reads from its own copy), known to every process so
    that all of them stop together; empty when all agree. Alone, ``value`` is not called (a
    digest of a large file or folder costs seconds at start-up)."""
    if get_world_size() == 1:
        return []
    values = on_every_process(value)
    return sorted({machine for machine, v in values if v != values[0][1]})


def on_every_process(value: Callable[[], Any]) -> List[Tuple[int, Any]]:
    """``(machine rank, value())`` of every process, in rank order, known to every process (what
    each machine finds in its own copy of a dataset, so that all stop together on a problem of
    one)."""
    if get_world_size() == 1:
        return [(get_machine_rank(), value())]
    values: List[Any] = [None] * get_world_size()
    dist.all_gather_object(values, (get_machine_rank(), value()))
    return values


def _picklable(e: Exception) -> Exception:
    """``e``, or a RuntimeError with its text when it cannot be sent to the other processes."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(e).__name__}: {e}")


def gather(obj: Any, dst: int = 0) -> Optional[List[Any]]:
    """Every process's picklable ``obj``, as a list on process ``dst`` (None elsewhere)."""
    if get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size() if get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def shared_random_seed() -> int:
    """A random seed, the same in every process (process 0's draw)."""
    seed = [random.randrange(2 ** 31)]
    if get_world_size() > 1:
        dist.broadcast_object_list(seed, src=0)
    return seed[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over processes (a copy; ``t`` is unchanged)."""
    t = t.clone()
    if get_world_size() > 1:
        dist.all_reduce(t)
    return t


def wrap_ddp(model: nn.Module, *, fp16_compression: bool = False, **kwargs: Any) -> nn.Module:
    """``model`` in DistributedDataParallel when several processes train (else ``model``).

    The one owner of the device rule: a CUDA model gets ``device_ids=[its device]`` (the local
    rank's GPU, which ``launch`` made current); a CPU model (gloo) gets none, which DDP requires
    and detectron2's ``create_ddp_model`` does not do. ``kwargs`` go to DDP (``broadcast_buffers``,
    ``find_unused_parameters``; an explicit ``device_ids`` wins); ``fp16_compression`` compresses
    the gradients' all-reduce, as detectron2's ``train.ddp.fp16_compression``."""
    if get_world_size() == 1:
        return model
    param = next(model.parameters(), None)
    if "device_ids" not in kwargs:
        cuda = param is not None and param.is_cuda
        kwargs["device_ids"] = [param.device.index if param.device.index is not None
                                else torch.cuda.current_device()] if cuda else None
    ddp = nn.parallel.DistributedDataParallel(model, **kwargs)
    if fp16_compression:
        from torch.distributed.algorithms.ddp_comm_hooks import default as comm_hooks

        ddp.register_comm_hook(state=None, hook=comm_hooks.fp16_compress_hook)
    return ddp


def cpu_if_no_cuda(device: str, setting: str) -> str:
    """``device``, or "cpu" (said on stderr with the config ``setting`` that now holds, e.g.
    "MODEL.DEVICE cpu") when it asks for CUDA on a machine without it: the one CUDA-to-CPU
    fallback of the detection tools (the classifier's trainer refuses instead)."""
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA is not available: running on the CPU ({setting}).", file=sys.stderr)
        return "cpu"
    return device


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


#: The port of process 0 under srun when MASTER_PORT is not set (torchrun's default).
SLURM_DEFAULT_PORT = 29500


def slurm_env(env: Optional[dict] = None) -> Optional[dict]:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
    MASTER_ADDR, MASTER_PORT) for a process started by ``srun`` with several tasks, or None.

    As torchvision's references: ``SLURM_PROCID`` is the rank, ``SLURM_NTASKS`` (the step's
    ``SLURM_STEP_NUM_TASKS`` when set) the world size, ``SLURM_LOCALID`` the local rank (the
    GPU), ``SLURM_NODEID`` the machine. MASTER_ADDR, when not set, is the first host of
    ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST`` (no ``scontrol``);
    MASTER_PORT, when not set, ``SLURM_DEFAULT_PORT``. One task (an ``sbatch`` script itself,
    ``salloc``), or variables torchrun set already: None, nothing to adopt."""
    env = os.environ if env is None else env
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" not in env or "SLURM_LOCALID" not in env or not tasks or int(tasks) < 2:
        return None
    if "RANK" in env and "WORLD_SIZE" in env:
        return None
    nodelist = (env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
                or env.get("SLURM_NODELIST") or "127.0.0.1")
    per_node = env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "1"
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": str(int(tasks)),
            "LOCAL_RANK": env["SLURM_LOCALID"], "LOCAL_WORLD_SIZE": re.split(r"[(,]", per_node)[0],
            "GROUP_RANK": env.get("SLURM_NODEID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodelist),
            "MASTER_PORT": env.get("MASTER_PORT") or str(SLURM_DEFAULT_PORT)}


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: "node[03-05,7],gpu1" -> "node03",
    "rack[2-3]-n[1-4]" -> "rack2-n1"."""
    m = re.match(r"([^,\[]*)(?:\[([^\]]*)\])?", nodelist.strip())
    prefix, ranges = m.groups()
    if ranges is None:
        return prefix
    rest = nodelist.strip()[m.end():]
    tail = first_host(rest) if rest and not rest.startswith(",") else ""
    return prefix + re.split(r"[-,]", ranges)[0] + tail


def adopt_slurm_env() -> bool:
    """Under ``srun`` with several tasks: set the torchrun variables (``slurm_env``) in this
    process's environment, so that ``launch`` initialises from it. Whether it did."""
    found = slurm_env()
    if found is not None:
        os.environ.update(found)
    return found is not None


def launch(main_func: Callable, num_gpus_per_machine: int, num_machines: int = 1,
           machine_rank: int = 0, dist_url: str = "auto", args: Sequence[Any] = (),
           timeout: timedelta = DEFAULT_TIMEOUT) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    One process: called directly. Several: spawned here (``dist_url`` "auto" picks a free local
    port; multi-machine jobs need an explicit ``tcp://host:port``). If a worker fails the others
    are stopped and ``WorkerFailedError`` says which one and how.
    """
    if launched_by_torchrun():
        if not dist.is_initialized():
            dist.init_process_group(_backend(), timeout=timeout)
        if torch.cuda.is_available():
            torch.cuda.set_device(get_local_rank())
        try:
            main_func(*args)
        finally:
            dist.destroy_process_group()
        return
    world_size = num_gpus_per_machine * num_machines
    if world_size <= 1:
        main_func(*args)
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT "
                             "of machine 0 for multi-machine jobs")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    if torch.cuda.is_available() and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(f"--num-gpus {num_gpus_per_machine} but only "
                         f"{torch.cuda.device_count()} CUDA devices are visible")
    ctx = mp.start_processes(_worker, nprocs=num_gpus_per_machine, join=False, start_method="spawn",
                             args=(main_func, world_size, num_gpus_per_machine, machine_rank,
                                   dist_url, tuple(args), timeout))
    try:
        with _forwarding_stop_signals([p.pid for p in ctx.processes]):
            while not ctx.join():
                pass
    except mp.ProcessExitedException as e:
        if e.exit_code in STOPPED_EXIT_CODES:  # stopped on request, checkpoint saved; rank 0 said so
            raise RunStopped("", e.exit_code - 128) from None
        if e.exit_code == 2:  # a user error, which the worker has printed in its one line
            raise WorkerFailedError("") from None
        how = f"signal {e.signal_name}" if e.signal_name else f"exit code {e.exit_code}"
        raise WorkerFailedError(f"worker process {e.error_index} stopped with {how}; "
                                "the other workers were stopped") from None
    except mp.ProcessRaisedException as e:
        raise WorkerFailedError(f"worker process {e.error_index} raised an error:\n{e}") from None


#: The exit codes of a worker that stopped on SIGINT / SIGTERM after saving (``RunStopped``).
STOPPED_EXIT_CODES = (128 + signal.SIGINT, 128 + signal.SIGTERM)


@contextmanager
def _forwarding_stop_signals(pids: Sequence[int]):
    """The launching process while its workers run: a SIGTERM is passed on to the workers (a
    scheduler may signal only the first process), which stop after their step and save; a
    first Ctrl-C is left to them (the terminal sends it to the whole process group), a second
    one stops the launcher too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupts = []

    def on_term(signum, frame):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def on_int(signum, frame):
        interrupts.append(signum)
        if len(interrupts) > 1:
            raise KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
                signal.SIGINT: signal.signal(signal.SIGINT, on_int)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _worker(local_rank: int, main_func: Callable, world_size: int, num_gpus_per_machine: int,
            machine_rank: int, dist_url: str, args: tuple, timeout: timedelta) -> None:
    rank = machine_rank * num_gpus_per_machine + local_rank
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(num_gpus_per_machine)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    try:
        _join(dist_url, world_size, rank, num_gpus_per_machine, timeout)
    except MachineMissingError as e:  # a user's error: one line, exit 2 (the launcher's rule)
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        synchronize()
        main_func(*args)
    finally:
        dist.destroy_process_group()


def _join(dist_url: str, world_size: int, rank: int, per_machine: int, timeout: timedelta) -> None:
    """The process group. For ``tcp://HOST:PORT``, through a store where each process says it
    joined, so that process 0 names a machine that did not come within ``timeout``, and the
    others say when machine 0 cannot be reached (``MachineMissingError``), instead of a
    timeout's traceback. Other URLs: ``init_process_group`` as it is."""
    m = re.fullmatch(r"tcp://(.+):(\d+)", dist_url)
    if m is None:
        dist.init_process_group(_backend(), init_method=dist_url, world_size=world_size,
                                rank=rank, timeout=timeout)
        return
    seconds = f"{timeout.total_seconds():g} s"
    try:
        store = dist.TCPStore(m.group(1), int(m.group(2)), world_size, is_master=rank == 0,
                              timeout=timeout, wait_for_workers=False)
    except (RuntimeError, OSError) as e:
        if rank == 0:
            raise MachineMissingError(f"machine 0 cannot listen on {dist_url} ({_first_line(e)}); "
                                      "give a free port of this machine in --dist-url") from None
        raise MachineMissingError(f"machine 0 did not answer at {dist_url} within {seconds}: start "
                                  "it (--machine-rank 0), or check --dist-url and the network") from None
    store.set(f"joined/{rank}", "1")
    if rank == 0:
        _wait_for_machines(store, world_size, per_machine, dist_url, timeout)
    try:
        dist.init_process_group(_backend(), store=store, world_size=world_size, rank=rank,
                                timeout=timeout)
    except (RuntimeError, OSError) as e:
        raise MachineMissingError(f"the job at {dist_url} did not start: {_first_line(e)} (machine 0 "
                                  "names a machine that did not join)") from None


def _wait_for_machines(store, world_size: int, per_machine: int, dist_url: str,
                       timeout: timedelta) -> None:
    """Process 0: every process's ``joined/<rank>`` key within ``timeout``, or an error naming
    the machines that sent none."""
    keys = [f"joined/{r}" for r in range(world_size)]
    deadline = time.monotonic() + timeout.total_seconds()
    while not store.check(keys):  # polled: a timed-out store.wait logs C++ warnings
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    else:
        return
    missing = sorted({r // per_machine for r in range(world_size) if not store.check([keys[r]])})
    if missing:
        names = ", ".join(str(m) for m in missing)
        raise MachineMissingError(
            f"machine {names} of {world_size // per_machine} did not join {dist_url} within "
            f"{timeout.total_seconds():g} s: start it with --machine-rank {missing[0]} and the same "
            "--num-machines and --dist-url, or check that it can reach this address")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
