"""fvcore checkpointers that load safely, save atomically and resume from a readable file.

``SafeCheckpointerMixin`` puts the rest of the package behind fvcore's ``Checkpointer`` API, and
``SafeCheckpointer`` is that checkpointer for the package's trainers: the classification trainer
uses it with fvcore's ``PeriodicCheckpointer``, and the detection layer mixes the same behaviour
into detectron2's ``DetectionCheckpointer``. The only checkpoint module that imports fvcore.
"""
import os
from typing import Any, Dict, List, Mapping, Optional

from fvcore.common.checkpoint import Checkpointer

from .atomic import save_checkpoint_atomic, write_text_atomic
from .completeness import checkpoint_is_complete, latest_complete_checkpoint
from .safe_load import CheckpointError, load_checkpoint_file
from .state_dict import load_state_dict_checked, state_dict_from_checkpoint


class SafeCheckpointerMixin:
    """What the package's checkpointers add to fvcore's ``Checkpointer`` (and so to detectron2's
    ``DetectionCheckpointer``, which the detection layer mixes it into):

    * loading through :func:`load_checkpoint_file` (never plain ``torch.load``/``pickle``), with
      a missing file named instead of an ``AssertionError``;
    * saving through :func:`save_checkpoint_atomic`, and ``last_checkpoint`` written atomically;
    * on resume, the tagged checkpoint if it is complete, else the newest complete periodic
      checkpoint (``model_<iteration>.pth``): a crash while writing never stops a resume.
    """

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):  # URLs: fvcore's PathManager
            raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
        return super().load(path, checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        data = load_checkpoint_file(filename)
        if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
            return dict(data)
        return {"model": state_dict_from_checkpoint(data, filename)[0]}

    def save(self, name: str, **kwargs: Any) -> None:
        """As fvcore's (model, checkpointables, ``kwargs``; then tag it as the last checkpoint),
        written atomically."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        save_checkpoint_atomic(data, save_file)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        write_text_atomic(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def get_checkpoint_file(self) -> str:
        tagged = super().get_checkpoint_file()
        if tagged and checkpoint_is_complete(tagged):
            return tagged
        newest = latest_complete_checkpoint(self.save_dir, "model_[0-9]*.pth") or ""
        if tagged and newest:
            self.logger.warning(f"The last checkpoint {tagged} cannot be read; resuming from "
                                f"{newest} instead.")
        return newest

    def has_checkpoint(self) -> bool:
        return bool(self.save_dir) and bool(self.get_checkpoint_file())


class SafeCheckpointer(SafeCheckpointerMixin, Checkpointer):
    """fvcore's ``Checkpointer`` for the package's trainers: safe, atomic, resumable (see
    :class:`SafeCheckpointerMixin`), and strict: a checkpoint that does not fit the model (a
    missing, unexpected or differently shaped weight) raises ``CheckpointError`` with one table
    (:func:`load_state_dict_checked`) instead of training a partly initialised model."""

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        self._source = path
        return super().load(path, checkpointables)

    def _load_model(self, checkpoint: Dict[str, Any]) -> None:
        load_state_dict_checked(self.model, checkpoint.pop("model"), strict=True,
                                source=getattr(self, "_source", "checkpoint"))
        return None  # nothing left to report
