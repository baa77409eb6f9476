"""The learning rate of the paper's recipes: torch's schedulers, plus the one rule of the paper
that torch has no scheduler for.

* ``build_lr_scheduler``: ``MultiStepLR`` (CIFAR-10: /10 at 32k and 48k iterations; stepped every
  iteration) or ``ReduceLROnPlateau`` (ImageNet: /10 "when the error plateaus"; stepped with each
  validation error, in percent).
* ``WarmUpUntilTrainError`` (ours): ResNet-110's warm-up (Sec. 4.2), "0.01 to warm up the
  training until the training error is below 80% (about 400 iterations), and then go back to
  0.1". While it lasts, each optimizer step uses the warm-up lr; the scheduler keeps counting, so
  afterwards the lr is the schedule's as if there had been no warm-up.
"""
import contextlib
from typing import Dict, Iterator, List, Optional, Union

import torch
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau

Scheduler = Union[MultiStepLR, ReduceLROnPlateau]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, solver) -> Scheduler:
    """``SOLVER.LR_SCHEDULER`` "step" (``STEPS``, ``GAMMA``) or "plateau" (``GAMMA``,
    ``PLATEAU_PATIENCE`` evaluations without an improvement of more than ``PLATEAU_THRESHOLD``,
    a fraction, of the error)."""
    if solver.LR_SCHEDULER == "step":
        return MultiStepLR(optimizer, milestones=list(solver.STEPS), gamma=solver.GAMMA)
    # ReduceLROnPlateau divides after `patience` bad evaluations *beyond* the first one.
    return ReduceLROnPlateau(optimizer, mode="min", factor=solver.GAMMA,
                             patience=solver.PLATEAU_PATIENCE - 1,
                             threshold=100 * solver.PLATEAU_THRESHOLD, threshold_mode="abs")


def step_per_iteration(scheduler: Scheduler) -> None:
    """Advance an iteration-based schedule by one iteration (a plateau schedule waits)."""
    if not isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step()


def step_per_evaluation(scheduler: Scheduler, val_error: float) -> Optional[str]:
    """Feed a validation error (%) to a plateau schedule; a message if it divided the lr."""
    if not isinstance(scheduler, ReduceLROnPlateau):
        return None
    before = scheduler.optimizer.param_groups[0]["lr"]
    scheduler.step(val_error)
    after = scheduler.optimizer.param_groups[0]["lr"]
    if after < before:
        return f"validation error plateaued at {val_error:.2f}%: lr divided by {before / after:g}"
    return None


class WarmUpUntilTrainError:
    """The ResNet-110 warm-up: ``lr`` (SOLVER.WARMUP_LR, 0 = none) until the mean training error
    of the last ``window`` iterations is below ``until`` (a fraction), or ``max_iter`` at the
    latest. A checkpointable (``state_dict``), so a resumed run continues it exactly."""

    def __init__(self, lr: float, until: float, window: int, max_iter: int):
        self.lr, self.until, self.window_size, self.max_iter = lr, until, window, max_iter
        self.active = lr > 0
        self.window: List[float] = []

    @classmethod
    def from_solver(cls, solver) -> "WarmUpUntilTrainError":
        return cls(solver.WARMUP_LR, solver.WARMUP_UNTIL_TRAIN_ERROR, solver.WARMUP_WINDOW,
                   solver.WARMUP_MAX_ITER)

    @contextlib.contextmanager
    def lr_for_step(self, optimizer: torch.optim.Optimizer) -> Iterator[float]:
        """Inside: the optimizer's groups at the lr of this step (the warm-up's while it lasts),
        which it yields; on exit the scheduler's lr is back."""
        scheduled = [group["lr"] for group in optimizer.param_groups]
        if self.active:
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        try:
            yield optimizer.param_groups[0]["lr"]
        finally:
            for group, lr in zip(optimizer.param_groups, scheduled):
                group["lr"] = lr

    def after_iteration(self, iteration: int, train_error: float) -> Optional[str]:
        """Record iteration ``iteration``'s training error (a fraction); a message when the
        warm-up ends."""
        if not self.active:
            return None
        self.window = (self.window + [train_error])[-self.window_size:]
        mean = sum(self.window) / len(self.window)
        if (len(self.window) == self.window_size and mean < self.until) or iteration + 1 >= self.max_iter:
            self.active = False
            return (f"warm-up ended after iteration {iteration + 1} (training error "
                    f"{100 * mean:.1f}%): lr back to the schedule's")
        return None

    def state_dict(self) -> Dict:
        return {"active": self.active, "window": list(self.window)}

    def load_state_dict(self, state: Dict) -> None:
        self.active, self.window = state["active"], list(state["window"])
