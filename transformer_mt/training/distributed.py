"""What data-parallel ranks must agree on: whether any of them wants to stop, and the update's token count."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        """The rank and world size torchrun sets (one process when it did not start us)."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` holds on any rank; every rank must ask at the same point."""
        if self.world_size == 1:
            return flag
        tensor = torch.tensor([flag], dtype=torch.int32, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor)

    def agree_on_stop(self, reason: str | None, device: torch.device) -> str | None:
        """Ranks stop together: one rank's Ctrl-C or time budget stops all at the same step."""
        return (reason or "another rank stopped") if self.any_rank(reason is not None, device) else None

    def total(self, count: int, device: torch.device) -> int:
        """`count` summed over the ranks."""
        if self.world_size == 1:
            return count
        tensor = torch.tensor([count], device=device)
        dist.all_reduce(tensor)
        return int(tensor)
