"""What training minimises and how: label-smoothed cross-entropy, Adam(W), the inverse-sqrt schedule."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.tokenizer import PAD


def smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL (detached) over the non-pad target tokens.

    The loss is F.cross_entropy(label_smoothing=ε) spelled out — (1 - ε)·NLL + ε·mean over the
    vocabulary of -log p — so that the NLL we log comes from the same log-softmax instead of a
    second one over the (tokens × V) logits."""
    log_probs, flat_target = F.log_softmax(logits.float().flatten(0, 1), dim=-1), target.flatten()
    nll = F.nll_loss(log_probs, flat_target, ignore_index=PAD, reduction="sum")
    uniform = -(log_probs.sum(-1) * (flat_target != PAD)).sum() / log_probs.size(-1)
    return (1 - smoothing) * nll + smoothing * uniform, nll.detach()


def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float,
         weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Adam:
    """Adam, or AdamW if `decoupled` (weight decay shrinks the weights directly instead of joining the
    gradient, where Adam's scaling would weaken it for parameters with large gradients), with PyTorch's
    fused kernel: one pass over all parameters instead of a loop of small ops per tensor."""
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    return kind(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)


def noam_lambda(warmup: int) -> Callable[[int], float]:
    """Linear warm-up to the peak learning rate, then decay with 1/sqrt(step) (Vaswani et al.)."""
    def factor(step: int) -> float:
        step += 1
        return min(step / warmup, math.sqrt(warmup / step))
    return factor
