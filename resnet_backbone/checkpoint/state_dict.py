"""The weights inside a checkpoint, and applying them to a model with a clear error.

* ``state_dict_from_checkpoint``: unwraps the containers checkpoints nest their weights under
  (``CONTAINER_KEYS``) and a ``module.`` prefix.
* ``incompatible_keys_table`` / ``describe_shape_mismatches`` / ``group_keys``: one table of how
  a checkpoint and a model differ, which both trainers and the detection checkpointer print.
* ``load_state_dict_checked``: copies a state dict into a model, raising ``CheckpointError`` with
  that table when it does not fit.

It works on loaded objects only (no files): it needs ``CheckpointError`` from ``safe_load`` and
nothing else of the package.
"""
import collections
import logging
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import torch
from tabulate import tabulate

from .safe_load import CheckpointError

# The package's logger name, as before the split into modules: logging configuration that names
# "resnet_backbone.checkpoint" keeps applying, and records keep that name.
logger = logging.getLogger(__package__)


#: Keys under which checkpoints nest their weights: detectron2 / our trainers, Lightning-style
#: files, Detectron (caffe2) detection models, pycls.
CONTAINER_KEYS = ("model", "state_dict", "blobs", "model_state")


def state_dict_from_checkpoint(obj: Any, source: os.PathLike = "checkpoint"
                               ) -> Tuple[Dict[str, Any], str]:
    """The weights inside a loaded checkpoint: ``(state_dict, container key or "")``.

    Unwraps ``{"model": sd}``, ``{"state_dict": sd}``, ``{"blobs": sd}``, ``{"model_state": sd}``
    and strips a ``module.`` prefix (DistributedDataParallel). Every value must be a tensor or a
    numpy array; caffe2 ``*_momentum`` blobs are optimizer state and are dropped. Raises
    ``CheckpointError`` naming ``source`` otherwise.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds no state dict: a {type(obj).__name__}, not a dict "
                              f"of weights (name -> tensor, or one under "
                              f"{', '.join(CONTAINER_KEYS)}).")
    container = next((k for k in CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), "")
    sd = dict(obj[container]) if container else dict(obj)
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not (isinstance(k, str) and k.endswith("_momentum"))}
    bad = sorted(str(k) for k, v in sd.items()
                 if not isinstance(k, str) or not isinstance(v, (torch.Tensor, np.ndarray)))
    if bad or not sd:
        found = f"non-array entries {bad[:5]}" if bad else "no weights"
        raise CheckpointError(f"{source} holds no state dict: {found} (looked inside "
                              f"{container or 'the top level'}; containers understood: "
                              f"{', '.join(CONTAINER_KEYS)})")
    return sd, container


def _shape(value: Any) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _shape_text(shape: Optional[Tuple[int, ...]]) -> str:
    return "x".join(map(str, shape)) if shape is not None else "-"


def shape_mismatches(model_state: Mapping[str, Any], ckpt_state: Mapping[str, Any]
                     ) -> List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
    """(name, model shape, checkpoint shape) of the names both hold with different shapes."""
    return [(name, _shape(value), _shape(ckpt_state[name])) for name, value in model_state.items()
            if name in ckpt_state and _shape(value) != _shape(ckpt_state[name])]


def group_keys(keys: Iterable[str]) -> List[str]:
    """``a.b.weight``, ``a.b.bias`` -> ``a.b.{bias,weight}``: one entry per module."""
    groups: Dict[str, List[str]] = collections.defaultdict(list)
    for key in sorted(keys):
        module, _, leaf = key.rpartition(".")
        groups[module].append(leaf)
    return [f"{m}.{{{','.join(v)}}}" if len(v) > 1 else (f"{m}.{v[0]}" if m else v[0])
            for m, v in groups.items()]


def incompatible_keys_table(missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                            mismatched: Iterable[Tuple[str, Any, Any]] = ()) -> str:
    """One table of how a checkpoint and a model differ: shape mismatches (with both shapes),
    names only the model has ("missing"), names only the checkpoint has ("unexpected"); names
    are grouped per module. ``""`` if they do not differ. Both trainers report loads with it."""
    rows = [("shape mismatch", name, _shape_text(a), _shape_text(b)) for name, a, b in mismatched]
    rows += [("missing", k, "", "-") for k in group_keys(missing)]
    rows += [("unexpected", k, "-", "") for k in group_keys(unexpected)]
    if not rows:
        return ""
    return tabulate(rows, headers=["", "name", "model shape", "checkpoint shape"], tablefmt="pipe")


def describe_shape_mismatches(model_state: Mapping[str, Any], ckpt_state: Mapping[str, Any]) -> str:
    """The table of :func:`incompatible_keys_table` for shape mismatches only; ``""`` if none."""
    return incompatible_keys_table(mismatched=shape_mismatches(model_state, ckpt_state))


class LoadResult(NamedTuple):
    missing_keys: List[str]
    unexpected_keys: List[str]


def load_state_dict_checked(model: torch.nn.Module, state: Mapping[str, Any], *,
                            strict: bool = True, source: str = "checkpoint") -> LoadResult:
    """Copy ``state`` (tensors or numpy arrays) into ``model``.

    Shape mismatches always raise ``CheckpointError`` with a table of the names and both
    shapes. With ``strict=True`` missing and unexpected keys raise too (in the same table);
    with ``strict=False`` they are logged and returned. ``source`` names the file in messages.
    BN step counters (``num_batches_tracked``) hold no weights and are never reported.
    """
    model_state = model.state_dict()
    state = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in state.items()}
    counter = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    missing = [k for k in model_state if k not in state and not counter(k)]
    unexpected = [k for k in state if k not in model_state and not counter(k)]
    mismatched = shape_mismatches(model_state, state)
    if mismatched or (strict and (missing or unexpected)):
        table = incompatible_keys_table(missing if strict else (), unexpected if strict else (),
                                        mismatched)
        raise CheckpointError(
            f"{source} does not fit the model ({type(model).__name__}):\n{table}\nWas it saved "
            "from a different architecture (depth, number of classes, shortcut option)?")
    if missing or unexpected:
        logger.warning("%s and the model differ (missing: left at their initial values; "
                       "unexpected: ignored):\n%s", source, incompatible_keys_table(missing, unexpected))
    model.load_state_dict({k: v for k, v in state.items() if k in model_state}, strict=False)
    return LoadResult(missing, unexpected)
