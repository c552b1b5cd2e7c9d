"""Where training stands: the counters a checkpoint saves, and the random-number generators' states."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch


@dataclass
class TrainState:
    step: int = 0  # optimiser updates done
    epoch: int = 0
    position: int = 0  # updates done inside the current epoch
    best_bleu: float = -1.0
    stale_validations: int = 0  # validations since the best BLEU (early stopping)
    skipped_batches: int = 0  # non-finite losses skipped (train.nonfinite=skip)


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_python_state(state["python"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_python_state(value):
    """weights_only loading returns lists where `random` wants tuples."""
    return tuple(_as_python_state(v) for v in value) if isinstance(value, (list, tuple)) else value
