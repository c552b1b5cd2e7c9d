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
    scaler_skips: int = 0  # fp16 updates the gradient scaler skipped while lowering its scale


def rng_state(device: torch.device) -> dict:
    """This process's generators: Python's, the CPU's, and that of the GPU it trains on."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restores `state` wherever its tensors were loaded: both setters accept only CPU byte tensors."""
    random.setstate(_as_python_state(state["python"]))
    torch.set_rng_state(_cpu_bytes(state["torch"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(_cpu_bytes(state["cuda"]), device)


def _cpu_bytes(state: torch.Tensor) -> torch.Tensor:
    return state.to(device="cpu", dtype=torch.uint8)


def own_rng_state(saved: list[dict] | dict, rank: int) -> dict:
    """This rank's state from a checkpoint's per-rank list; rank 0's when the run resumes on more
    ranks than it saved (a checkpoint of one process saved a dict)."""
    states = saved if isinstance(saved, list) else [saved]
    return states[rank] if rank < len(states) else states[0]


def _as_python_state(value):
    """weights_only loading returns lists where `random` wants tuples."""
    return tuple(_as_python_state(v) for v in value) if isinstance(value, (list, tuple)) else value
