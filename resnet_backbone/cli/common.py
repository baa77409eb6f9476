"""What every tool shares: the training tools' command line (detectron2's flags), their one
process ``worker``, and one error convention: a user error is one line on stderr,
``error: <what is wrong and how to fix it>``, and exit status 2; anything else is a bug and keeps
its traceback."""
import argparse
import os
import sys
from typing import Any, Callable, Optional

from ..checkpoint import CheckpointError
from ..data.datasets import CorruptImageError
from ..distributed import WorkerFailedError, adopt_slurm_env, get_rank
from ..errors import NonFiniteLossError
from ..stopping import RunStopped

#: Exceptions that mean bad input (arguments, config values, files, data), not a bug.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError,
               CheckpointError, CorruptImageError, NonFiniteLossError, WorkerFailedError)


def message(e: BaseException) -> str:
    """The text of an exception (a KeyError's without the quotes ``str()`` adds). An exception
    that torch's DataLoader re-raised from a worker process ("Caught X in DataLoader worker
    process N.\\nOriginal Traceback (most recent call last): ...") gives the original
    exception's own message: the lines after the traceback's frames, without "pkg.X: "."""
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
    header = "Original Traceback (most recent call last):"
    if text.startswith("Caught ") and header in text:
        # the frames of the last (the re-raised exception's) traceback are indented
        lines = text.rsplit("Traceback (most recent call last):", 1)[1].splitlines()
        first = next((i for i, line in enumerate(lines) if line[:1].strip()), len(lines))
        original = "\n".join(lines[first:]).strip()
        name = type(e).__name__
        prefix = original.split(": ", 1)[0] if ": " in original else original
        if prefix == name or prefix.endswith("." + name):
            original = original[len(prefix):].lstrip(":").strip()
            if isinstance(e, KeyError) and len(original) > 1 and original[0] == original[-1] in "'\"":
                original = original[1:-1]
        return original or text
    return text


def job_world_size(args: argparse.Namespace) -> int:
    """The job's number of processes: the launcher's under ``torchrun`` (and under ``srun``,
    whose SLURM variables ``adopt_slurm_env`` turns into torchrun's, in this process's
    environment, before ``launch`` reads them), else ``--num-gpus`` x ``--num-machines``."""
    adopt_slurm_env()
    return int(os.environ.get("WORLD_SIZE", args.num_gpus * args.num_machines))


def print_error(e: BaseException) -> int:
    """``error: <message>`` on stderr (nothing for an empty message: a worker process has printed
    it); the exit status 2."""
    if message(e):
        print(f"error: {message(e)}", file=sys.stderr, flush=True)
    return 2


def run_tool(body: Callable[[], Optional[int]]) -> int:
    """``body()``'s exit status (0 for None); 2 with one ``error:`` line for a user error; for a
    run stopped on SIGTERM / Ctrl-C (``RunStopped``) its one line and 128 + the signal number;
    130 with one line for a Ctrl-C outside training (no traceback: nothing is lost, every
    write is atomic)."""
    try:
        return body() or 0
    except USER_ERRORS as e:
        return print_error(e)
    except RunStopped as e:
        if str(e):  # empty when a worker process has said it
            print(str(e), file=sys.stderr, flush=True)
        return e.exit_status
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); the files written so far are complete (a checkpoint being "
              "written is discarded): continue a training run with --resume",
              file=sys.stderr, flush=True)
        return 130


def worker(job: Callable[..., Any], world_size: int, *args: Any) -> None:
    """One process of a training tool: ``job(*args)`` (a module-level function, so that
    ``launch`` can spawn it). In a multi-process job a user error ends the process with
    ``error: ...`` and exit status 2 (the launcher then stops the others); alone, it is raised
    for ``run_tool`` to report."""
    try:
        job(*args)
    except USER_ERRORS as e:
        if world_size == 1:
            raise
        sys.exit(print_error(e))
    except RunStopped as e:
        if world_size == 1:
            raise
        if get_rank() == 0:
            print(str(e), file=sys.stderr, flush=True)
        sys.exit(e.exit_status)


def add_network_options(p: argparse.ArgumentParser) -> None:
    """The options of a named network, for the tools that build one by name."""
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier outputs (default: 1000 ImageNet nets, 10 CIFAR nets)")
    p.add_argument("--shortcut", choices=["A", "B", "C"], default=None,
                   help="shortcut option of Sec. 3.3 (residual nets; default B ImageNet, A CIFAR)")
    p.add_argument("--stride-in-3x3", action="store_true",
                   help="bottleneck stride in the 3x3 conv (torchvision) instead of the 1x1 (paper)")


def network_options(args: argparse.Namespace) -> dict:
    """``create_model`` keywords from ``add_network_options`` (all but ``num_classes``)."""
    options = {}
    if args.shortcut:
        options["shortcut"] = args.shortcut
    if args.stride_in_3x3:
        options["stride_in_1x1"] = False
    return options


def training_argument_parser(description: str) -> argparse.ArgumentParser:
    """detectron2's ``default_argument_parser`` flags, for both training tools."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest complete checkpoint in OUTPUT_DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUTPUT_DIR that holds a run: its checkpoints and "
                        "metrics are deleted first (without --resume or --overwrite such a "
                        "folder is refused)")
    p.add_argument("--eval-only", action="store_true", help="evaluate MODEL.WEIGHTS, no training")
    p.add_argument("--num-gpus", type=int, default=1, help="processes per machine (GPUs; on a "
                   "CPU machine, CPU processes where the tool supports it)")
    p.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    p.add_argument("--machine-rank", type=int, default=0, help="the rank of this machine")
    p.add_argument("--dist-url", default="auto", help="initialization URL for multi-process jobs "
                   "(auto: a free local port; multi-machine: tcp://HOST:PORT of machine 0)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                   help="config overrides, KEY VALUE pairs, after every --option")
    return p
