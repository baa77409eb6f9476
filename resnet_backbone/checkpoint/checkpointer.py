"""fvcore checkpointers that load safely, save atomically and resume from a readable file.

``SafeCheckpointerMixin`` puts the rest of the package behind fvcore's ``Checkpointer`` API, and
``SafeCheckpointer`` is that checkpointer for the package's trainers: the classification trainer
uses it with fvcore's ``PeriodicCheckpointer``, and the detection layer mixes the same behaviour
into detectron2's ``DetectionCheckpointer``. The only checkpoint module that imports fvcore.
"""
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from fvcore.common.checkpoint import Checkpointer

from ..distributed import computed_once
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
      checkpoint (``model_<iteration>.pth``): a crash while writing never stops a resume;
    * a resume that needs no shared filesystem: process 0 reads that checkpoint from its
      ``save_dir`` and broadcasts its content (``resume_point``), so that the other machines,
      whose folders hold no checkpoint, continue from the same state (``resume_or_load``).
    """

    #: The checkpoint the last ``resume_or_load`` resumed from (process 0's path), or None.
    resumed_from: Optional[str] = None

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        if path and "://" not in path and not os.path.isfile(path):  # URLs: fvcore's PathManager
            raise CheckpointError(f"Checkpoint {path} does not exist (or is not a file).")
        return super().load(path, checkpointables)

    def _load_file(self, filename: str) -> Dict[str, Any]:
        data = load_checkpoint_file(filename)
        if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
            return dict(data)
        return {"model": state_dict_from_checkpoint(data, filename)[0]}

    def resume_point(self) -> Optional[Tuple[str, Dict[str, Any]]]:
        """Process 0's newest complete checkpoint (``get_checkpoint_file``) as (its path, its
        content), read there and broadcast to every process; None when it has none."""
        def read() -> Optional[Tuple[str, Dict[str, Any]]]:
            path = self.get_checkpoint_file() if self.save_dir else ""  # has_checkpoint's test
            return (path, self._load_file(path)) if path else None
        return computed_once(read)

    def load_read(self, path: str, checkpoint: Dict[str, Any],
                  checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """fvcore's ``load`` of a checkpoint already read (``resume_point``): the model, then
        ``checkpointables`` (default: all); what is left. (fvcore's ``load`` reads the file
        itself, which another machine does not have.)"""
        self.logger.info(f"[Checkpointer] Loading from {path} ...")
        incompatible = self._load_model(checkpoint)
        if incompatible is not None:
            self._log_incompatible_keys(incompatible)
        for key in self.checkpointables if checkpointables is None else checkpointables:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {path} ...")
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        return checkpoint

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """fvcore's: with ``resume``, process 0's newest checkpoint (every checkpointable), on
        every machine (``resume_point``); else, or when there is none, ``path``'s weights only
        (each machine reads its own copy). ``resumed_from`` says which."""
        point = self.resume_point() if resume else None
        self.resumed_from = point[0] if point else None
        if point is None:
            return self.load(path, checkpointables=[])
        return self.load_read(*point)

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

    def load_read(self, path: str, checkpoint: Dict[str, Any],
                  checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        self._source = path
        return super().load_read(path, checkpoint, checkpointables)

    def _load_model(self, checkpoint: Dict[str, Any]) -> None:
        load_state_dict_checked(self.model, checkpoint.pop("model"), strict=True,
                                source=getattr(self, "_source", "checkpoint"))
        return None  # nothing left to report
