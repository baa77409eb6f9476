"""What both trainers say when a run diverges, and the check of the folder they write to."""
import os
import tempfile
from typing import Optional


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stopped before the step that would
    have written NaN weights, and its checkpoints are the last good ones."""


def non_finite_loss_message(loss: float, iteration: int, lr: float, last_checkpoint: Optional[str],
                            causes: str) -> str:
    """One line: where it happened, what to resume from, what usually causes it."""
    return (f"the training loss is {loss} at iteration {iteration} (lr {lr:g}); training stopped. "
            f"The last good checkpoint is {last_checkpoint or 'none (none written yet)'}. "
            f"Likely causes: {causes}. Fix it, then run again with --resume.")


def prepare_output_dir(path: str, key: str = "OUTPUT_DIR") -> str:
    """Create ``path`` if needed and check that files can be written there; a clear error (not
    a traceback deep in a trainer) if it is a file or not writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{key} {path} is a file, not a folder; give a folder (it is "
                                 "created if missing)")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write to {key} {path} ({e.strerror or e}); give a "
                              "writable folder") from None
    return path
