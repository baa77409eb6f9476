"""Every difference between detectron2 v0.6 and detectron2 main that the plugin handles, in one
place (the rest of the plugin calls these and tests no version). One line each: which version
does what.

* ``has_compiled_ops``: v0.6 and main built without C++/CUDA ops (the pure-Python build) have no
  usable ``detectron2._C``; main also imports without one at all.
* ``environment_report``: v0.6's ``collect_env_info`` asks ``detectron2._C`` for its compiler
  and raises ``AttributeError`` under the pure-Python build; there the report says so instead.
* ``numpy_compat``: v0.6 reads VOC image lists with ``np.str``, an alias NumPy 2 removed; main
  uses the builtin.
* ``split_checkpoint_query``: main accepts ``path?matching_heuristics=True``; v0.6 does not (it
  suffix-matches only when the loaded dict says so), so the checkpointer reads the suffix itself.
* ``trainer_state``: main's ``DefaultTrainer`` (and this package's trainer before the engine, on
  v0.6) saved the optimizer under ``"_trainer"``; ``SimpleTrainer`` (both) saves it at the top.

Not here because the package does not go through detectron2 for them: ``launch`` (v0.6 asserts
CUDA for several processes; ``resnet_backbone.distributed.launch`` is used with both), DDP
wrapping (``create_ddp_model`` asks ``comm.get_local_rank()``, whose per-machine group v0.6
creates only in its own ``launch``; ``resnet_backbone.distributed.wrap_ddp`` needs no group), and
export (``detectron2.export`` needs caffe2 on v0.6; ``.export`` has its own tracing adapter).
"""
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Tuple
from urllib.parse import parse_qs

import numpy as np


def has_compiled_ops() -> bool:
    """Whether detectron2 was built with its C++/CUDA ops (the pure-Python build has none)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "PURE_PYTHON_BUILD", False)


def environment_report() -> str:
    """detectron2's ``collect_env_info()``; under a build without compiled ops (v0.6 asks
    ``_C`` for its compiler there) one line saying it is unavailable, not a stopped run."""
    from detectron2.utils.collect_env import collect_env_info

    try:
        return collect_env_info()
    except AttributeError as e:
        return f"(detectron2 environment report unavailable: {e})"


#: NumPy aliases detectron2 v0.6 uses (``np.str`` in ``load_voc_instances``) and NumPy 2 lacks.
_V06_NUMPY_ALIASES = {"str": str, "int": int, "float": float, "object": object}


def _numpy_has(name: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hasattr(np, name)


@contextmanager
def numpy_compat() -> Iterator[None]:
    """Provide ``np.str``/``np.int``/... (the builtins) while detectron2 v0.6 code runs (nothing
    changes where NumPy still has them, or on main, which does not use them)."""
    added = [name for name in _V06_NUMPY_ALIASES if not _numpy_has(name)]
    for name in added:
        setattr(np, name, _V06_NUMPY_ALIASES[name])
    try:
        yield
    finally:
        for name in added:
            delattr(np, name)


def split_checkpoint_query(path: str) -> Tuple[str, bool]:
    """``(file path, force suffix matching)`` of a weights path with main's optional
    ``?matching_heuristics=True`` suffix, read the same way under v0.6; any other query is a
    ``ValueError``."""
    if not path or "?" not in path:
        return path, False
    path, query = path.split("?", 1)
    options = parse_qs(query)
    force = options.pop("matching_heuristics", ["False"]) == ["True"]
    if options:
        raise ValueError(f"Unsupported query {sorted(options)} in checkpoint path; the only "
                         "one is ?matching_heuristics=True")
    return path, force


def trainer_state(state: Dict[str, Any]) -> Dict[str, Any]:
    """A checkpoint's trainer state as ``SimpleTrainer.load_state_dict`` reads it: one saved by
    a ``DefaultTrainer`` (main's, or ours on v0.6) keeps the optimizer (and AMP scaler) under
    ``"_trainer"``; its iteration, hooks and run seed are the outer ones."""
    if "_trainer" not in state:
        return state
    outer = {k: v for k, v in state.items() if k != "_trainer"}
    return {**state["_trainer"], **outer}


__all__ = ["has_compiled_ops", "environment_report", "numpy_compat", "split_checkpoint_query",
           "trainer_state"]
