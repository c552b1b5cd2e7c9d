"""One optimiser update: forward and backward over the micro-batches (accumulated, and all-reduced
once under DDP), gradient clipping, then the optimiser, schedule and gradient-scaler steps."""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..batching import Batch, padding_share
from ..config import TrainConfig
from ..device import autocast
from .distributed import Distributed
from .objective import adam, noam_lambda, smoothed_loss


@dataclass
class UpdateResult:
    finite: bool  # False: the loss or gradients were not finite and the update was not applied
    loss: float  # summed over the update's target tokens (on this rank)
    scale: float  # what `loss` was multiplied by for the backward pass: world size / the update's tokens
    nll: float
    tokens: int
    grad_norm: float
    batches: int
    padding: float  # summed padding share of the micro-batches


class Updater:
    """The model as trained (wrapped for DDP and torch.compile when asked), its optimiser, learning-rate
    schedule and gradient scaler, and the update that moves them."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, precision: str,
                 distributed: Distributed):
        self.model, self.config, self.device, self.precision, self.dist = model, config, device, precision, distributed
        self.step_model: nn.Module = model
        if distributed.world_size > 1:
            self.step_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        if config.compile:
            self.step_model = torch.compile(self.step_model, dynamic=True)
        self.optimizer = adam(model.parameters(), config.lr, tuple(config.adam_betas), config.adam_eps,
                              config.weight_decay, decoupled=config.optimizer == "adamw")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, noam_lambda(config.warmup_steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def update(self, micro: list[Batch]) -> UpdateResult:
        # Normalise by all target tokens of the update (every micro-batch, every rank), so that the
        # gradient does not depend on how the update was split.
        scale = self.dist.world_size / max(1, self.dist.total(sum(b.n_tokens for b in micro), self.device))
        loss_sum = nll_sum = 0.0
        for index, batch in enumerate(micro):
            batch = batch.to(self.device)
            sync = index == len(micro) - 1 or self.dist.world_size == 1
            with self._maybe_no_sync(sync), autocast(self.device, self.precision):
                logits = self.step_model(batch.src, batch.tgt_in)
            loss, nll = smoothed_loss(logits, batch.tgt_out, self.config.label_smoothing)
            with self._maybe_no_sync(sync):
                self.scaler.scale(loss * scale).backward()
            loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm or math.inf)
        result = UpdateResult(True, float(loss_sum), scale, float(nll_sum), sum(b.n_tokens for b in micro),
                              float(grad_norm), len(micro), sum(padding_share(b) for b in micro))
        # The norm is of the all-reduced gradients, so every rank takes the same decision. With fp16
        # the scaler itself skips overflowing steps and lowers its scale.
        if self.precision != "fp16" and not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            result.finite = False
            return result
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return result

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def _maybe_no_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not isinstance(self.step_model, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return self.step_model.no_sync()
