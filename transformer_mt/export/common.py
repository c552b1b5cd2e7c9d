"""What every export shares: the checkpoint it reads, and a folder built aside and renamed into place,
so that a failed export leaves nothing that looks finished and an earlier export survives until the new
one is whole."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config, from_dict
from ..data.tokenizer import TokenizerPair
from ..errors import UserError
from ..model import checkpoint as ckpt
from ..run_folder import RunPaths


@dataclass
class Trained:
    """A run's checkpoint as an export reads it: weights, config, tokenizers, where it came from."""
    run: RunPaths
    path: Path
    config: Config
    weights: dict[str, torch.Tensor]
    tokenizers: TokenizerPair
    step: int

    @classmethod
    def load(cls, run: RunPaths, checkpoint: Path | None) -> "Trained":
        path = checkpoint or run.default_checkpoint()
        state = ckpt.load(path)
        config = from_dict(state["config"], origin=str(path))
        tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, state["vocab"]["joint"])
        return cls(run, path, config, state["model"], tokenizers, state["state"]["step"])


def check_output(output: Path, force: bool) -> None:
    """Refused before any work: a file in the way, or an export (or anything) there without --force."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file, not a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        raise UserError(f"--output {output} exists and is not empty: pass --force to replace it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--output {output}: cannot create {output.parent} ({err.strerror or err})") from None


@contextmanager
def staged(output: Path) -> Iterator[Path]:
    """A folder path beside `output` (not yet created) to build the export in; renamed over `output` when
    the block ends without error, removed when it fails. A write that fails is one line."""
    staging = output.with_name(f".{output.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        yield staging
        _move_into_place(staging, output)
    except OSError as err:
        raise UserError(f"cannot write the export {output}: {err.strerror or err}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename the finished export over `output`; an earlier one is removed only after that."""
    old = output.with_name(f".{output.name}.replaced")
    shutil.rmtree(old, ignore_errors=True)
    if output.exists():
        os.replace(output, old)
    os.replace(staging, output)
    shutil.rmtree(old, ignore_errors=True)
