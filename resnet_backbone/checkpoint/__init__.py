"""Reading and writing checkpoints without executing code from them and without losing them.

Loading never runs code from the file; saving never loses the previous checkpoint; a state dict
that does not fit the model says why. One module per job (import from here; every name below is
re-exported):

* ``safe_load``: ``load_checkpoint_file`` (torch files through ``torch.load(weights_only=True)``
  with numpy arrays admitted, ``.pkl`` files through ``load_pickle_safely``, a restricted
  unpickler), ``CheckpointError``, ``UnsafeCheckpointError``.
* ``completeness``: ``verify_checkpoint`` / ``checkpoint_is_complete`` (a file cut off mid-write
  fails cheaply) and ``latest_complete_checkpoint`` (what ``--resume`` continues from).
* ``atomic``: ``save_checkpoint_atomic``, ``save_pickle_atomic`` (temporary file, fsync, load
  back, rename, fsync the folder) and the small text files beside checkpoints:
  ``write_text_atomic``, ``append_text``, ``keep_json_lines``, ``write_file_atomic``.
* ``state_dict``: ``state_dict_from_checkpoint``, ``CONTAINER_KEYS``, ``incompatible_keys_table``,
  ``describe_shape_mismatches``, ``group_keys``, ``load_state_dict_checked`` (``LoadResult``).
* ``checkpointer``: fvcore checkpointers built on all of the above (``SafeCheckpointerMixin``,
  ``SafeCheckpointer``): the classification trainer uses them with fvcore's
  ``PeriodicCheckpointer``, and the detection layer mixes the same behaviour into detectron2's
  ``DetectionCheckpointer``.

Imports run one way: ``safe_load`` <- ``completeness`` <- ``atomic`` <- ``checkpointer``, and
``safe_load`` <- ``state_dict`` <- ``checkpointer``; no module imports this package's
``__init__``.
"""
from .atomic import (append_text, keep_json_lines, save_checkpoint_atomic, write_file_atomic,
                     write_text_atomic)
from .checkpointer import SafeCheckpointer, SafeCheckpointerMixin
from .completeness import checkpoint_is_complete, latest_complete_checkpoint, verify_checkpoint
from .safe_load import (CheckpointError, UnsafeCheckpointError, load_checkpoint_file,
                        load_pickle_safely)
from .state_dict import (CONTAINER_KEYS, describe_shape_mismatches, group_keys,
                         incompatible_keys_table, load_state_dict_checked,
                         state_dict_from_checkpoint)

# Importable from here as before the split, though not in __all__: public names the package's
# modules use, and numpy's core module (``numpy._core`` or ``numpy.core``), which the tests use.
from .atomic import save_pickle_atomic  # noqa: F401
from .safe_load import _np_core  # noqa: F401
from .state_dict import LoadResult, shape_mismatches  # noqa: F401

__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "load_pickle_safely", "load_checkpoint_file",
    "save_checkpoint_atomic", "verify_checkpoint", "checkpoint_is_complete",
    "latest_complete_checkpoint", "state_dict_from_checkpoint", "describe_shape_mismatches",
    "load_state_dict_checked", "incompatible_keys_table", "group_keys", "CONTAINER_KEYS",
    "write_text_atomic", "write_file_atomic", "append_text", "keep_json_lines",
    "SafeCheckpointerMixin", "SafeCheckpointer",
]
