"""What data-parallel ranks must agree on: whether any of them wants to stop, and the update's token count."""
from __future__ import annotations

import datetime
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

    @property
    def grouped(self) -> bool:
        """Whether a process group exists (torchrun started us, even as one process): then the model
        trains under DDP and the ranks agree through collectives."""
        return dist.is_available() and dist.is_initialized()

    @classmethod
    def from_env(cls) -> "Distributed":
        """The rank and world size torchrun sets (one process when it did not start us)."""
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    @staticmethod
    def launched() -> bool:
        """Whether torchrun (or another launcher setting its variables) started this process."""
        return "RANK" in os.environ and "WORLD_SIZE" in os.environ

    @staticmethod
    def start(device: str, timeout_s: float | None) -> None:
        """The process group torchrun's variables describe: NCCL on CUDA, gloo on CPU; a collective
        waiting longer than `timeout_s` (train.collective_timeout_s) fails instead of hanging."""
        use_nccl = device != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        timeout = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group("nccl" if use_nccl else "gloo", **timeout)

    @staticmethod
    def store() -> dist.Store:
        """The process group's key-value store, for waiting outside any collective (training/setup.py).
        PyTorch offers no public accessor for the default group's store: this private one is confined here."""
        return dist.distributed_c10d._get_default_store()

    def stop(self) -> None:
        if self.grouped:
            dist.destroy_process_group()

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` holds on any rank; every rank must ask at the same point."""
        if not self.grouped:
            return flag
        tensor = torch.tensor([flag], dtype=torch.int32, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor)

    def agree_on_stop(self, reason: str | None, device: torch.device) -> str | None:
        """Ranks stop together: one rank's Ctrl-C or time budget stops all at the same step."""
        return (reason or "another rank stopped") if self.any_rank(reason is not None, device) else None

    def total(self, count: torch.Tensor) -> torch.Tensor:
        """`count` (a tensor on the training device) summed over the ranks, without waiting for it."""
        if not self.grouped:
            return count
        count = count.clone()
        dist.all_reduce(count)
        return count

    def gather(self, value: object) -> list:
        """`value` from every rank, in rank order (on every rank)."""
        if not self.grouped:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def backend(self) -> str | None:
        return dist.get_backend() if self.grouped else None
