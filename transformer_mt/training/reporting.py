"""What training shows: the progress bar, log lines (rank 0 only) and TensorBoard scalars, text and figures."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..run_folder import lineage_markdown
from .step import UpdateResult
from .validation import ValidationResult


class Window:
    """Training statistics between two log lines; the sums of device tensors stay on the device until
    a log line reads them."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss = self.nll = self.grad_norm = self.padding = 0.0
        self.tokens = self.updates = self.batches = 0
        self.started = time.monotonic()

    def add(self, update: UpdateResult) -> None:
        # In float64, as the host's Python floats summed them.
        self.loss, self.nll = self.loss + update.loss.double(), self.nll + update.nll.double()
        self.tokens, self.updates = self.tokens + update.tokens, self.updates + 1
        self.grad_norm = self.grad_norm + update.grad_norm.double()
        self.batches, self.padding = self.batches + update.batches, self.padding + update.padding

    def flush(self, world_size: int) -> dict[str, float]:
        seconds = max(1e-9, time.monotonic() - self.started)
        nll = float(self.nll) / max(1, self.tokens)
        stats = {"loss": float(self.loss) / max(1, self.tokens), "nll": nll, "ppl": math.exp(min(nll, 50)),
                 "grad_norm": float(self.grad_norm) / max(1, self.updates),
                 "tokens_per_sec": self.tokens * world_size / seconds,
                 "padding_share": self.padding / max(1, self.batches)}
        self.reset()
        return stats


class Report:
    """Rank 0 writes; the other ranks' reports stay silent."""

    def __init__(self, folder: Path, is_main: bool, world_size: int, log_every: int, device: torch.device):
        self.is_main, self.world_size, self.log_every, self.device = is_main, world_size, log_every, device
        self.writer = SummaryWriter(str(folder)) if is_main else None
        self.window = Window()
        self.progress: tqdm | None = None

    def open_progress(self, total: int | None, initial: int) -> None:
        self.progress = tqdm(total=total, initial=initial, disable=not self.is_main, unit="step", dynamic_ncols=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer:
            self.writer.close()

    def fine_tuning(self, lineage: dict, keep: list[str]) -> None:
        """Where a fine-tuning starts, on screen and in TensorBoard's text tab (the whole lineage)."""
        self.message(f"fine-tuning from {lineage['checkpoint']} (step {lineage['step']})"
                     + (f", keeping its {', '.join(keep)}" if keep else ""))
        if self.writer:
            self.writer.add_text("run/lineage", lineage_markdown(lineage), 0)

    def message(self, text: str) -> None:
        if self.is_main:
            tqdm.write(text)

    def update(self, step: int, result: UpdateResult, lr: float) -> None:
        """An applied update; every `log_every` steps, the window's statistics."""
        self.window.add(result)
        self.progress.update(1)
        if step % self.log_every != 0:
            return
        stats = self.window.flush(self.world_size)
        if self.device.type == "cuda":  # the most this process's tensors have held on the GPU so far
            stats["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        self.progress.set_postfix(loss=f"{stats['loss']:.3f}", tok_s=f"{stats['tokens_per_sec']:.0f}", lr=f"{lr:.2e}")
        if self.writer:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", value, step)
            self.writer.add_scalar("train/lr", lr, step)

    def validation(self, step: int, result: ValidationResult, improved: bool) -> None:
        """Called on rank 0, which validates."""
        for key, value in result.scalars.items():
            self.writer.add_scalar(f"valid/{key}", value, step)
        self.writer.add_text("valid/samples", result.samples_markdown, step)
        if result.figure is not None:
            self.writer.add_figure("valid/cross_attention", result.figure, step)
        for corpus, scores in result.by_corpus.items():
            for key, value in scores.items():
                self.writer.add_scalar(f"valid/{key}/{corpus}", value, step)
        s = result.scalars
        each = "".join(f", {corpus} {scores['bleu']:.2f}" for corpus, scores in result.by_corpus.items())
        tqdm.write(f"step {step}: valid loss {s['loss']:.3f} ppl {s['ppl']:.2f} BLEU {s['bleu']:.2f} "
                   f"chrF {s['chrf']:.2f}" + (f" (BLEU by corpus{each[1:]})" if each else "")
                   + (" (best)" if improved else ""))
