"""Checkpoint averaging (fairseq's average_checkpoints): the mean of the last K models' weights."""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from . import checkpoint as ckpt


def average_checkpoints(paths: list[Path]) -> dict:
    """Average the model weights; config, vocabulary and training state come from the newest."""
    if not paths:
        raise UserError("no checkpoints to average")
    states = [ckpt.load(path) for path in paths]
    keys = states[-1]["model"].keys()
    for path, state in zip(paths, states):
        if state["model"].keys() != keys or state["config"]["model"] != states[-1]["config"]["model"]:
            raise UserError(f"{path} holds a different model: only checkpoints of one run can be averaged")
    averaged = {}
    for key in keys:
        tensors = [state["model"][key] for state in states]
        averaged[key] = (torch.stack([t.double() for t in tensors]).mean(0).to(tensors[0].dtype)
                         if tensors[0].is_floating_point() else tensors[-1])
    newest = states[-1]
    return {"model": averaged, "config": newest["config"], "vocab": newest["vocab"], "state": newest["state"],
            "averaged_from": [str(p) for p in paths]}
