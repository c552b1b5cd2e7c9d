"""Checkpoints: written atomically, loaded safely (weights_only), checked before use."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, from_dict
from ..data.tokenizer import TokenizerPair
from ..errors import UserError
from ..run_folder import RunPaths

# What a checkpoint holds and means; raised when that changes, so that an older transformer-mt refuses a
# newer checkpoint in one line instead of misreading it.
FORMAT_VERSION = 1


class CheckpointError(UserError):
    pass


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target.

    A crash or a second Ctrl-C mid-write leaves the previous file intact, never a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save({"format_version": FORMAT_VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:  # a failed write (disk full, a folder in the way) leaves no hidden half-file behind
        tmp.unlink(missing_ok=True)


def copy_atomic(source: Path, target: Path) -> None:
    """A real copy (not a link), so deleting or rotating `source` never breaks `target`."""
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, wrong file: all mean "unusable"
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(err).__name__})") from None
    if not isinstance(state, dict) or not {"model", "config", "format_version"} <= state.keys():
        raise CheckpointError(f"{path} is not a transformer-mt checkpoint")
    version = state["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} is in checkpoint format {version}, which this transformer-mt (format "
                              f"{FORMAT_VERSION}) cannot read: update transformer-mt")
    return state


@dataclass
class Trained:
    """A run's trained checkpoint, as decoding and every export read it: weights (in CPU memory),
    config, the run's tokenizers, where it came from and the step it was saved at."""
    run: RunPaths
    path: Path
    config: Config
    weights: dict[str, torch.Tensor]
    tokenizers: TokenizerPair
    step: int
    vocab: dict[str, Any]  # the vocabulary sizes the model was built with: src, tgt, joint

    @classmethod
    def load(cls, run: RunPaths, checkpoint: Path | None = None) -> "Trained":
        """`checkpoint`, or the run's default one (best.pt, else last.pt)."""
        path = checkpoint or run.default_checkpoint()
        state = load(path)
        config = from_dict(state["config"], origin=str(path))
        tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, state["vocab"]["joint"])
        return cls(run, path, config, state["model"], tokenizers, state["state"]["step"], state["vocab"])
