"""The learning-rate schedules of the classification trainer
(``resnet_backbone.classification.schedule``): steps, ResNet-110's warm-up until the training
error falls, and the plateau schedule."""
import math

import torch

from resnet_backbone.classification.config import get_cls_cfg
from resnet_backbone.classification.schedule import (WarmUpUntilTrainError, build_lr_scheduler,
                                                     step_per_evaluation, step_per_iteration)


def _optimizer():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def test_step_schedule_and_resnet110_warmup():
    s = get_cls_cfg().SOLVER
    s.merge_from_list(["STEPS", (5, 8), "WARMUP_LR", 0.01, "WARMUP_WINDOW", 3])
    opt = _optimizer()
    scheduler, warmup = build_lr_scheduler(opt, s), WarmUpUntilTrainError.from_solver(s)
    used = []
    for it, train_err in enumerate([0.9, 0.85, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]):
        with warmup.lr_for_step(opt) as lr:
            opt.step()
            used.append(lr)
        step_per_iteration(scheduler)
        message = warmup.after_iteration(it, train_err)
        assert (message is not None) == (it == 2)  # mean of the last 3: 0.75 < 0.8
    assert used[:3] == [0.01] * 3 and used[3:5] == [0.1, 0.1]  # back to the schedule's lr
    assert [round(lr, 6) for lr in used[5:]] == [0.01, 0.01, 0.01, 0.001]  # /10 at 5 and at 8
    resumed_opt = _optimizer()
    resumed = build_lr_scheduler(resumed_opt, s)
    resumed_opt.load_state_dict(opt.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    resumed_opt.step(), opt.step()
    step_per_iteration(resumed), step_per_iteration(scheduler)
    assert resumed_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    again = WarmUpUntilTrainError.from_solver(s)
    again.load_state_dict(warmup.state_dict())
    assert not again.active


def test_plateau_schedule_divides_lr_when_val_error_stalls():
    s = get_cls_cfg().SOLVER
    s.merge_from_list(["LR_SCHEDULER", "plateau", "PLATEAU_PATIENCE", 2])
    opt = _optimizer()
    scheduler = build_lr_scheduler(opt, s)
    messages = [step_per_evaluation(scheduler, err) for err in (50.0, 40.0, 39.99, 40.5)]
    # 39.99 is not an improvement of more than 0.1 points; two such evaluations divide the lr
    assert messages[:3] == [None, None, None] and "lr divided by 10" in messages[3]
    assert math.isclose(opt.param_groups[0]["lr"], 0.01) and scheduler.best == 40.0
    step_per_iteration(scheduler)  # iterations do not move a plateau schedule
    assert math.isclose(opt.param_groups[0]["lr"], 0.01)

