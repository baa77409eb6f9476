"""Seeds and RNG states, so that runs are reproducible and a resumed run is the same run.

Ours, not detectron2's ``seed_all_rng``: the same three seedings, but the core and the
classification layer do not import detectron2.
"""
import random
from typing import Dict

import numpy as np
import torch


def derived_seed(seed: int, epoch: int, position: int) -> int:
    """A seed for one sample (or one step) of a run, a function of (seed, epoch, position)."""
    return ((seed * 1_000_003 + epoch) * 10_000_019 + position) % (2 ** 63 - 1)


def seed_everything(seed: int) -> None:
    """Python's, numpy's and torch's (every device's) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def rng_state() -> Dict:
    """The global RNG states (torch CPU and CUDA, numpy, Python) as plain tensors and lists,
    which a checkpoint stores and ``torch.load(weights_only=True)`` reads back."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": list(random.getstate()[1]), "python_version": random.getstate()[0]}


def set_rng_state(state: Dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
