"""What every tool shares: the training tools' command line (detectron2's flags), their one
process ``worker``, and one error convention: a user error is one line on stderr,
``error: <what is wrong and how to fix it>``, and exit status 2; anything else is a bug and keeps
its traceback."""
import argparse
import sys
from typing import Any, Callable, Optional

from ..checkpoint import CheckpointError
from ..data.datasets import CorruptImageError
from ..distributed import WorkerFailedError
from ..errors import NonFiniteLossError

#: Exceptions that mean bad input (arguments, config values, files, data), not a bug.
USER_ERRORS = (ValueError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError,
               CheckpointError, CorruptImageError, NonFiniteLossError, WorkerFailedError)


def message(e: BaseException) -> str:
    """The text of an exception (a KeyError's without the quotes ``str()`` adds)."""
    return str(e.args[0] if isinstance(e, KeyError) and e.args else e)


def print_error(e: BaseException) -> int:
    print(f"error: {message(e)}", file=sys.stderr, flush=True)
    return 2


def run_tool(body: Callable[[], Optional[int]]) -> int:
    """``body()``'s exit status (0 for None), or 2 with one ``error:`` line for a user error."""
    try:
        return body() or 0
    except USER_ERRORS as e:
        return print_error(e)


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
