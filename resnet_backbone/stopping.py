"""Stopping a training run on request, with a checkpoint: SIGTERM (what SLURM, Kubernetes and
most schedulers send before they kill) and Ctrl-C.

During training (``stop_requests()``), the first SIGTERM or SIGINT only sets a flag. Each
training loop reads it after a step (``requested()``), agrees on it across processes (its own
all-reduce), saves a checkpoint of that step as its periodic checkpointer would, and raises
``RunStopped``; the tools print its one line and exit with 128 + the signal number (143 for
SIGTERM, 130 for Ctrl-C), so a scheduler or script never takes the run for a finished one. A
``--resume`` then continues exactly (the checkpoint is a normal one). A second Ctrl-C stops at
once (``KeyboardInterrupt``; the atomic writes leave the previous checkpoints intact).

Outside training (set-up, evaluation) the signals keep their default behaviour.
"""
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

#: The signal that asked the current run to stop, or None.
_requested: Optional[int] = None


class RunStopped(Exception):
    """A training run stopped on a signal after saving its checkpoint; ``exit_status`` is
    128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_status = 128 + int(signum)


def requested() -> Optional[int]:
    """The signal number that asked this process to stop, or None."""
    return _requested


def request(signum: int = signal.SIGTERM) -> None:
    """Ask the running loop to stop after its current step (what the signal handler does)."""
    global _requested
    _requested = int(signum)


def _handler(signum, frame) -> None:
    if _requested is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now
    if _requested is None:
        name = signal.Signals(signum).name
        print(f"{name} received: stopping after this iteration and saving a checkpoint"
              + (" (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""),
              file=sys.stderr, flush=True)
    request(signum)


@contextmanager
def stop_requests() -> Iterator[None]:
    """Within: SIGTERM and SIGINT ask the loop to stop after the current step (see the module
    docstring); the previous handlers come back on exit. A no-op outside the main thread, where
    Python cannot install signal handlers."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def stopped_message(signum: int, iteration: int, checkpoint: str) -> str:
    """One line: why the run stopped, what it saved, how to continue."""
    return (f"stopped by {signal.Signals(signum).name} after iteration {iteration}: saved "
            f"{checkpoint}; continue with the same command and --resume")


__all__ = ["RunStopped", "requested", "request", "stop_requests", "stopped_message"]
