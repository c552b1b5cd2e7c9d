"""A run's checkpoints during training: each save writes step-N.pt and last.pt (and best.pt when
validation improved), keeps the newest `keep_last` periodic ones, and a restore falls back from a
damaged last.pt to the newest periodic checkpoint that loads."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UserError
from ..model import checkpoint
from ..run_folder import RunPaths


class Checkpoints:
    def __init__(self, run: RunPaths, keep_last: int, log: Callable[[str], None]):
        self.run, self.keep_last, self.log = run, keep_last, log

    def write(self, payload: dict[str, Any], step: int, best: bool) -> UserError | None:
        """The error to report when the disk refused (every write is atomic, so what is there still loads)."""
        periodic = self.run.step_checkpoint(step)
        try:
            checkpoint.save_atomic(payload, periodic)
            checkpoint.copy_atomic(periodic, self.run.last)
            for old in self.run.step_checkpoints()[: -self.keep_last]:
                old.unlink()
            if best:
                checkpoint.copy_atomic(self.run.last, self.run.best)
        except OSError as err:  # disk full, permissions
            return UserError(f"cannot write the step-{step} checkpoint in {self.run.checkpoints} "
                             f"({err.strerror or err}); the checkpoints already there are intact: make room, "
                             f"then continue with train.resume=true")
        return None

    def newest_good(self) -> dict[str, Any]:
        """last.pt, or the newest periodic checkpoint that loads if last.pt is damaged, in CPU memory:
        the model's and optimiser's load_state_dict copy each tensor to its parameter's device, so no
        second copy of the weights and Adam state is staged on the GPU, and the RNG states stay the
        CPU byte tensors that torch.set_rng_state and torch.cuda.set_rng_state accept."""
        for path in [self.run.last] + self.run.step_checkpoints()[::-1]:
            if not path.is_file():
                continue
            try:
                state = checkpoint.load(path, map_location="cpu")
            except checkpoint.CheckpointError as err:
                self.log(f"warning: {err}; trying an older checkpoint")
                continue
            self.log(f"resuming from {path} (step {state['state']['step']})")
            return state
        raise UserError(f"no loadable checkpoint in {self.run.checkpoints}")
