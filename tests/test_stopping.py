"""Stopping on request (resnet_backbone.stopping): during training the first SIGTERM or Ctrl-C
only asks the loop to stop after its step, a second Ctrl-C stops at once, and the previous
handlers come back afterwards. The loops' checkpoint and exact resume are tested through the
tools (tests/cli/test_train_cls.py, tests/cli/test_train_det_reliability.py)."""
import os
import signal

import pytest

from resnet_backbone import stopping


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_asks_the_loop_to_stop(signum, capsys):
    before = signal.getsignal(signum)
    with stopping.stop_requests():
        assert stopping.requested() is None
        os.kill(os.getpid(), signum)
        assert stopping.requested() == signum
        os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM changes nothing
    assert signal.getsignal(signum) is before
    err = capsys.readouterr().err
    assert err.count("received: stopping after this iteration and saving a checkpoint") == 1, err


def test_a_second_ctrl_c_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with stopping.stop_requests():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_run_stopped_exits_with_128_plus_the_signal():
    e = stopping.RunStopped(stopping.stopped_message(signal.SIGTERM, 7, "out/model_0000006.pth"),
                            signal.SIGTERM)
    assert e.exit_status == 143
    assert str(e) == ("stopped by SIGTERM after iteration 7: saved out/model_0000006.pth; continue "
                      "with the same command and --resume")
