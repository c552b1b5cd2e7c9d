"""One optimiser update: forward and backward over the micro-batches (accumulated, and all-reduced
once under DDP), gradient clipping, then the optimiser, schedule and gradient-scaler steps.

On CUDA an update waits for the GPU once: to learn whether its gradients are finite, which decides
whether the optimiser and the schedule step. Its loss, NLL and gradient norm stay on the device
until a log line reads them (docs/training.md)."""
from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import TrainConfig
from ..data.batching import Batch, padding_share
from ..data.tokenizer import PAD
from ..model.device import autocast
from .distributed import Distributed
from .objective import adam, noam_lambda, smoothed_loss


@dataclass
class UpdateResult:
    finite: bool  # False: the loss or gradients were not finite and the update was not applied
    loss: Tensor  # summed over the update's target tokens (on this rank), on the device
    scale: Tensor  # what `loss` was multiplied by for the backward pass: world size / the update's tokens
    nll: Tensor
    tokens: int
    grad_norm: Tensor
    batches: int
    padding: float  # summed padding share of the micro-batches
    # fp16: the gradient scaler found inf/nan gradients at a loss scale of 1 or more and skipped the
    # update, lowering its scale; routine while the scale settles, so not the non-finite policy's business.
    scaler_skipped: bool = False


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's option not to broadcast the buffers before every forward: the positional table is a
    constant, the same on every rank. Newer PyTorch names it forward_sync_buffers."""
    parameters = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


class Updater:
    """The model as trained (wrapped for DDP and torch.compile when asked), its optimiser, learning-rate
    schedule and gradient scaler, and the update that moves them."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device, precision: str,
                 distributed: Distributed):
        self.model, self.config, self.device, self.precision, self.dist = model, config, device, precision, distributed
        # Kept apart from step_model: torch.compile wraps it, and no_sync must still be found.
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        self.step_model: nn.Module = model
        if distributed.grouped:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None, **_no_buffer_sync())
            self.step_model = self.ddp
        if config.compile:
            self.step_model = torch.compile(self.step_model, dynamic=True)
        self.optimizer = adam(model.parameters(), config.lr, tuple(config.adam_betas), config.adam_eps,
                              config.weight_decay, decoupled=config.optimizer == "adamw")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, noam_lambda(config.warmup_steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def update(self, micro: list[Batch]) -> UpdateResult:
        batches = [batch.to(self.device) for batch in micro]
        # Normalise by all target tokens of the update (every micro-batch, every rank), so that the
        # gradient does not depend on how the update was split.
        tokens = sum((b.tgt_out != PAD).sum() for b in batches)
        # In float64 then rounded, as a Python float would be: the same scale as counting on the host.
        scale = (self.dist.world_size / self.dist.total(tokens).clamp(min=1).double()).float()
        loss_sum = nll_sum = torch.zeros((), device=self.device)
        for index, batch in enumerate(batches):
            with self._maybe_no_sync(index == len(batches) - 1), autocast(self.device, self.precision):
                logits = self.step_model(batch.src, batch.tgt_in, batch.src_index)
            loss, nll = smoothed_loss(logits, batch.tgt_out, self.config.label_smoothing)
            with self._maybe_no_sync(index == len(batches) - 1):
                self.scaler.scale(loss * scale).backward()
            loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm or math.inf).detach()
        result = UpdateResult(True, loss_sum, scale, nll_sum, sum(b.n_tokens for b in micro), grad_norm,
                              len(micro), sum(padding_share(b) for b in micro))
        # The norm is of the all-reduced gradients, so every rank takes the same decision.
        if not torch.isfinite(grad_norm):  # the update's one wait for the GPU
            self.optimizer.zero_grad(set_to_none=True)
            result.finite = False
            if self.scaler.is_enabled():
                self.scaler.update()  # lowers the scale (step would have skipped the optimiser)
                result.scaler_skipped = self.scaler.get_scale() >= 1.0
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

    def start_from(self, state: dict, optimizer: bool, schedule: bool) -> None:
        """A parent's weights; its optimiser moments and schedule only where kept. Kept moments come with
        this run's hyperparameters (learning rate, betas, decay), not the parent's."""
        self.model.load_state_dict(state["model"])
        if optimizer:
            mine = [{k: v for k, v in group.items() if k != "params"} for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(state["optimizer"])
            for group, settings in zip(self.optimizer.param_groups, mine):
                group.update(settings)
        if schedule:  # the parent's curve where it stopped, its learning rate for the next update
            self.scheduler.load_state_dict(state["scheduler"])
            for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
                group["lr"] = lr

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # a bf16 or fp32 run saves its disabled scaler as {}: an fp16 resume starts afresh
            self.scaler.load_state_dict(state["scaler"])

    def _maybe_no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        """Gradients are all-reduced once per update, in the last micro-batch's backward pass."""
        if last or self.ddp is None:
            return contextlib.nullcontext()
        return self.ddp.no_sync()
