"""Scoped silencing of warnings that third-party packages raise about their own code.

fvcore (``fvcore.nn``, FLOP counting) and detectron2 (``detectron2.layers`` / ``.modeling``)
decorate functions with ``torch.jit.script`` when they are imported, and PyTorch >= 2.9 warns
about it (a ``FutureWarning`` pointing into their code, not the user's). The package imports
those modules inside ``quiet_third_party_imports()`` only, so the user's own warning filters
stay untouched: nothing here changes process-wide state.
"""
import warnings
from contextlib import contextmanager
from typing import Iterator

#: The exact message PyTorch's ``torch.jit.script`` gives (torch >= 2.9); only this is silenced.
JIT_SCRIPT_DEPRECATED = r"`torch.jit.script` is deprecated"


@contextmanager
def quiet_third_party_imports() -> Iterator[None]:
    """Ignore ``JIT_SCRIPT_DEPRECATED`` (``FutureWarning``) inside the block, then restore the
    caller's filters."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_SCRIPT_DEPRECATED, category=FutureWarning)
        yield


#: detectron2's anchor generator (v0.6 and main) calls ``torch.meshgrid`` without ``indexing=``;
#: PyTorch warns once per process (a ``UserWarning`` pointing into detectron2, not the user's code).
MESHGRID_INDEXING = r"torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument"


@contextmanager
def quiet_detectron2_inference() -> Iterator[None]:
    """Ignore ``MESHGRID_INDEXING`` (``UserWarning``) inside the block (a detectron2 model's
    forward), then restore the caller's filters."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=MESHGRID_INDEXING, category=UserWarning)
        yield
