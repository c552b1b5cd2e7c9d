"""Training: teacher forcing, label-smoothed cross-entropy, Adam with inverse-sqrt warm-up,
mixed precision, gradient accumulation, validation (BLEU/chrF), TensorBoard, checkpoints, resume, DDP."""
from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from . import checkpoint as ckpt
from .batching import Batch, collate, epoch_batches, padding_share, token_batches
from .config import Config
from .errors import StoppedByRank0, UserError
from .metrics import corpus_scores
from .model import Transformer, count_parameters
from .pipeline import Prepared
from .runtime import (attention_kernels, autocast, pick_device, pick_precision, rng_state, set_rng_state,
                      slow_precision_warning)
from .search import SearchConfig, greedy
from .store import encode_pairs
from .tokenizer import PAD


@dataclass
class TrainState:
    step: int = 0  # optimiser updates done
    epoch: int = 0
    position: int = 0  # updates done inside the current epoch
    best_bleu: float = -1.0
    stale_validations: int = 0  # validations since the best BLEU (early stopping)
    skipped_batches: int = 0  # non-finite losses skipped (train.nonfinite=skip)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def noam_lambda(warmup: int):
    """Linear warm-up to the peak learning rate, then decay with 1/sqrt(step) (Vaswani et al.)."""
    def factor(step: int) -> float:
        step += 1
        return min(step / warmup, math.sqrt(warmup / step))
    return factor


def adam(params, lr: float, betas: tuple[float, float], eps: float, weight_decay: float = 0.0,
         decoupled: bool = False) -> torch.optim.Adam:
    """Adam, or AdamW if `decoupled` (weight decay shrinks the weights directly instead of joining the
    gradient, where Adam's scaling would weaken it for parameters with large gradients), with PyTorch's
    fused kernel: one pass over all parameters instead of a loop of small ops per tensor (measured: a 3×
    faster optimiser step on CPU, ~1% of a training step at 2,048 tokens)."""
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    return kind(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)


def smoothed_loss(logits: Tensor, target: Tensor, smoothing: float) -> tuple[Tensor, Tensor]:
    """Summed label-smoothed cross-entropy and summed NLL (detached) over the non-pad target tokens.

    The loss is F.cross_entropy(label_smoothing=ε) spelled out — (1 - ε)·NLL + ε·mean over the
    vocabulary of -log p — so that the NLL we log comes from the same log-softmax instead of a
    second one over (tokens × V) logits (~2% of a CPU training step)."""
    log_probs, flat_target = F.log_softmax(logits.float().flatten(0, 1), dim=-1), target.flatten()
    nll = F.nll_loss(log_probs, flat_target, ignore_index=PAD, reduction="sum")
    uniform = -(log_probs.sum(-1) * (flat_target != PAD)).sum() / log_probs.size(-1)
    return (1 - smoothing) * nll + smoothing * uniform, nll.detach()


class Trainer:
    def __init__(self, config: Config, prepared: Prepared, distributed: Distributed | None = None):
        self.config, self.prepared = config, prepared
        self.run, self.tokenizers = prepared.run, prepared.tokenizers
        self.dist = distributed or Distributed()
        tc = config.train
        self.device = pick_device(tc.device)
        self.precision = pick_precision(tc.precision, self.device)
        torch.manual_seed(tc.seed)
        self.model = Transformer(config.model, self.tokenizers.src.vocab_size, self.tokenizers.tgt.vocab_size,
                                 shared_vocab=self.tokenizers.joint).to(self.device)
        self.step_model: nn.Module = self.model
        if self.dist.world_size > 1:
            self.step_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if tc.compile:
            self.step_model = torch.compile(self.step_model, dynamic=True)
        self.optimizer = adam(self.model.parameters(), tc.lr, tuple(tc.adam_betas), tc.adam_eps, tc.weight_decay,
                              decoupled=tc.optimizer == "adamw")
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, noam_lambda(tc.warmup_steps))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.state = TrainState()
        self.writer = SummaryWriter(str(self.run.root)) if self.dist.is_main else None
        self.valid = _ValidationSet(prepared, config)
        self.stop_reason: str | None = None
        self._signals = 0
        if prepared.resumed:
            self._restore()

    # ---- checkpoints -------------------------------------------------------------------------
    def _state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "state": asdict(self.state),
            "config": self.config.to_dict(),
            "corpus": self.prepared.corpus_key,  # which prepared corpus the run trains on
            "vocab": {"src": self.tokenizers.src.vocab_size, "tgt": self.tokenizers.tgt.vocab_size,
                      "joint": self.tokenizers.joint},
        }

    def save(self, best: bool = False) -> None:
        """Rank 0 writes; every rank learns whether it could, so that all stop together if not."""
        error = self._write_checkpoints(best) if self.dist.is_main else None
        if self._any_rank(error is not None):
            raise error if error is not None else StoppedByRank0()

    def _write_checkpoints(self, best: bool) -> UserError | None:
        periodic = self.run.step_checkpoint(self.state.step)
        try:
            ckpt.save_atomic(self._state_dict(), periodic)
            ckpt.copy_atomic(periodic, self.run.last)
            for old in self.run.step_checkpoints()[: -self.config.train.keep_last]:
                old.unlink()
            if best:
                ckpt.copy_atomic(self.run.last, self.run.best)
        except OSError as err:  # disk full, permissions: every write is atomic, so what is there still loads
            return UserError(f"cannot write the step-{self.state.step} checkpoint in {self.run.checkpoints} "
                             f"({err.strerror or err}); the checkpoints already there are intact: make room, "
                             f"then continue with train.resume=true")
        return None

    def _restore(self) -> None:
        state = self._load_newest_good()
        if state.get("corpus") != self.prepared.corpus_key:
            if not self.dist.is_main:  # every rank sees it; rank 0 says it once
                raise StoppedByRank0()
            raise UserError(f"cannot resume {self.run.root}: its checkpoints were trained on another prepared "
                            f"corpus than the one in {self.run.store} (start a new run, or restore that corpus)")
        self.model.load_state_dict(state["model"])
        # Checkpoints from before fused Adam say fused=None. Set it before loading: PyTorch then also
        # puts each `step` counter where the fused kernel expects it (fp32, on the parameter's device).
        for group in state["optimizer"]["param_groups"]:
            group["fused"] = self.optimizer.defaults["fused"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.state = TrainState(**state["state"])

    def _load_newest_good(self) -> dict:
        """last.pt, or the newest periodic checkpoint that loads if last.pt is damaged."""
        candidates = [self.run.last] + self.run.step_checkpoints()[::-1]
        for path in candidates:
            if not path.is_file():
                continue
            try:
                state = ckpt.load(path, map_location=self.device)
            except ckpt.CheckpointError as err:
                self._log(f"warning: {err}; trying an older checkpoint")
                continue
            self._log(f"resuming from {path} (step {state['state']['step']})")
            return state
        raise UserError(f"no loadable checkpoint in {self.run.checkpoints}")

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self) -> TrainState:
        tc = self.config.train
        self._log(f"model: {count_parameters(self.model) / 1e6:.1f}M parameters, device {self.device}, "
                  f"precision {self.precision}, {self.dist.world_size} process(es)")
        if warning := slow_precision_warning(self.precision, self.device):
            self._log(f"warning: {warning}")
        self._start = time.monotonic()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        progress = tqdm(total=tc.max_steps, initial=self.state.step, disable=not self.dist.is_main,
                        unit="step", dynamic_ncols=True)
        try:
            with attention_kernels(self.device):
                self._epochs(progress)
                self._finish()
        finally:
            progress.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.writer:
                self.writer.close()
        return self.state

    def _epochs(self, progress: tqdm) -> None:
        tc = self.config.train
        window = _Window()
        self.stop_reason = self._budget_spent()  # a resumed run may have nothing left to do
        while self.stop_reason is None:
            if tc.max_epochs is not None and self.state.epoch >= tc.max_epochs:
                self.stop_reason = f"reached train.max_epochs={tc.max_epochs}"
                break
            plan = epoch_batches(self.prepared.train_ids, tc.batch_tokens, tc.seed, self.state.epoch,
                                 self.dist.rank, self.dist.world_size)
            for position in range(self.state.position, math.ceil(len(plan) / tc.accumulate)):
                micro = [collate(self.prepared.train_ids, plan[i])
                         for i in range(position * tc.accumulate, min(len(plan), (position + 1) * tc.accumulate))]
                updated = self._update(micro, window)
                self.state.position = position + 1
                if updated:
                    progress.update(1)
                    self._after_update(window, progress)
                else:
                    self.stop_reason = self._agree_on_stop(self._budget_spent())
                if self.stop_reason is not None:
                    return
            self.state.epoch += 1
            self.state.position = 0

    def _update(self, micro: list[Batch], window: "_Window") -> bool:
        """One optimiser update over the micro-batches; False when a non-finite batch was skipped."""
        tc = self.config.train
        n_tokens = self._global_tokens(sum(b.n_tokens for b in micro))
        loss_sum = nll_sum = 0.0
        for index, batch in enumerate(micro):
            window.padding += padding_share(batch)
            batch = batch.to(self.device)
            sync = index == len(micro) - 1 or self.dist.world_size == 1
            with self._maybe_no_sync(sync), autocast(self.device, self.precision):
                logits = self.step_model(batch.src, batch.tgt_in)
            loss, nll = smoothed_loss(logits, batch.tgt_out, tc.label_smoothing)
            with self._maybe_no_sync(sync):
                # Normalise by all target tokens of the update (every micro-batch, every rank), so
                # the gradient does not depend on how the update was split.
                self.scaler.scale(loss * (self.dist.world_size / n_tokens)).backward()
            loss_sum, nll_sum = loss_sum + loss.detach(), nll_sum + nll
        self.scaler.unscale_(self.optimizer)
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_norm or math.inf)
        # The norm is of the all-reduced gradients, so every rank takes the same decision. With fp16
        # the scaler itself skips overflowing steps and lowers its scale.
        if self.precision != "fp16" and not torch.isfinite(grad_norm):
            self._non_finite(float(loss_sum) / max(1, n_tokens) * self.dist.world_size)
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        window.add(float(loss_sum), float(nll_sum), sum(b.n_tokens for b in micro), float(grad_norm), len(micro))
        return True

    def _non_finite(self, value: float) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.train.nonfinite == "skip":
            self.state.skipped_batches += 1
            self._log(f"warning: non-finite loss or gradients (loss {value}) at step {self.state.step + 1}: "
                      f"batch skipped ({self.state.skipped_batches} so far)")
            return
        if not self.dist.is_main:  # every rank sees the all-reduced gradients; rank 0 says it once
            raise StoppedByRank0()
        raise UserError(f"non-finite loss or gradients (loss {value}) at step {self.state.step + 1}; the last good "
                        f"checkpoint is "
                        f"{self.run.last} (resume with a lower train.lr, or set train.nonfinite=skip)")

    def _maybe_no_sync(self, sync: bool):
        if sync or not isinstance(self.step_model, nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return self.step_model.no_sync()

    def _global_tokens(self, n_tokens: int) -> int:
        if self.dist.world_size == 1:
            return n_tokens
        total = torch.tensor([n_tokens], device=self.device)
        dist.all_reduce(total)
        return int(total)

    def _after_update(self, window: "_Window", progress: tqdm) -> None:
        tc, step = self.config.train, self.state.step
        if window.updates and step % tc.log_every == 0:
            self._log_window(window, progress)
        if step % tc.valid_every == 0:
            self._validate_and_save()
        elif step % tc.checkpoint_every == 0:
            self.save()
        reason = self.stop_reason or self._budget_spent()  # stop_reason: set by early stopping
        self.stop_reason = self._agree_on_stop(reason)

    def _budget_spent(self) -> str | None:
        tc = self.config.train
        if tc.max_steps is not None and self.state.step >= tc.max_steps:
            return f"reached train.max_steps={tc.max_steps}"
        if tc.max_minutes is not None and time.monotonic() - self._start >= tc.max_minutes * 60:
            return f"used the train.max_minutes={tc.max_minutes} budget"
        if self._signals:
            return "interrupted"
        return None

    def _agree_on_stop(self, reason: str | None) -> str | None:
        """Ranks stop together: one rank's Ctrl-C or time budget stops all at the same step."""
        return (reason or "another rank stopped") if self._any_rank(reason is not None) else None

    def _any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank; every rank must ask at the same point."""
        if self.dist.world_size == 1:
            return flag
        tensor = torch.tensor([flag], dtype=torch.int32, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor)

    def _log_window(self, window: "_Window", progress: tqdm) -> None:
        stats = window.flush(self.dist.world_size)
        if self.device.type == "cuda":  # the most this process's tensors have held on the GPU so far
            stats["gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        lr = self.scheduler.get_last_lr()[0]
        progress.set_postfix(loss=f"{stats['loss']:.3f}", tok_s=f"{stats['tokens_per_sec']:.0f}", lr=f"{lr:.2e}")
        if self.writer:
            for key, value in stats.items():
                self.writer.add_scalar(f"train/{key}", value, self.state.step)
            self.writer.add_scalar("train/lr", lr, self.state.step)

    def _validate_and_save(self) -> None:
        improved = self._validate() if self.dist.is_main else False
        self.save(best=improved)  # on every rank: the others wait here while rank 0 validates

    def _validate(self) -> bool:
        """Rank 0's validation: logs, early-stopping bookkeeping; whether BLEU improved."""
        result = self.valid.evaluate(self.model, self.device, self.precision, self.config)
        for key, value in result.scalars.items():
            self.writer.add_scalar(f"valid/{key}", value, self.state.step)
        self.writer.add_text("valid/samples", result.samples_markdown, self.state.step)
        if result.figure is not None:
            self.writer.add_figure("valid/cross_attention", result.figure, self.state.step)
        improved = result.scalars["bleu"] > self.state.best_bleu
        if improved:
            self.state.best_bleu, self.state.stale_validations = result.scalars["bleu"], 0
        else:
            self.state.stale_validations += 1
        tqdm.write(f"step {self.state.step}: valid loss {result.scalars['loss']:.3f} "
                   f"ppl {result.scalars['ppl']:.2f} BLEU {result.scalars['bleu']:.2f} chrF {result.scalars['chrf']:.2f}"
                   + (" (best)" if improved else ""))
        patience = self.config.train.patience
        if patience is not None and self.state.stale_validations >= patience:
            self.stop_reason = f"no better validation BLEU in {patience} validations (train.patience)"
        return improved

    def _finish(self) -> None:
        if self.state.step % self.config.train.valid_every != 0 or self.state.step == 0:
            self._validate_and_save()
        self._log(f"stopped: {self.stop_reason}. step {self.state.step}, best valid BLEU "
                  f"{max(self.state.best_bleu, 0):.2f}; checkpoints in {self.run.checkpoints}")
        if self.stop_reason == "interrupted":
            self._log(f"resume with: make train CONFIG=... ARGS=\"train.resume=true run.name={self.config.run.name}\"")

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals > 1:
            raise KeyboardInterrupt  # second Ctrl-C: leave at once (checkpoint writes are atomic)
        self._log("\nstopping after this step and saving (Ctrl-C again to quit at once)")

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            tqdm.write(message)


class _Window:
    """Training statistics between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss = self.nll = self.grad_norm = self.padding = 0.0
        self.tokens = self.updates = self.batches = 0
        self.started = time.monotonic()

    def add(self, loss: float, nll: float, tokens: int, grad_norm: float, batches: int) -> None:
        self.loss, self.nll, self.tokens = self.loss + loss, self.nll + nll, self.tokens + tokens
        self.grad_norm, self.updates, self.batches = self.grad_norm + grad_norm, self.updates + 1, self.batches + batches

    def flush(self, world_size: int) -> dict[str, float]:
        seconds = max(1e-9, time.monotonic() - self.started)
        nll = self.nll / max(1, self.tokens)
        stats = {"loss": self.loss / max(1, self.tokens), "nll": nll, "ppl": math.exp(min(nll, 50)),
                 "grad_norm": self.grad_norm / max(1, self.updates),
                 "tokens_per_sec": self.tokens * world_size / seconds,
                 "padding_share": self.padding / max(1, self.batches)}
        self.reset()
        return stats


@dataclass
class _ValidationResult:
    scalars: dict[str, float]
    samples_markdown: str
    figure: object | None


class _ValidationSet:
    """A capped, length-sorted subset of the validation split, encoded once."""

    def __init__(self, prepared: Prepared, config: Config):
        self.pairs = prepared.valid[: config.train.valid_max_sentences]
        self.ids = encode_pairs(self.pairs, prepared.tokenizers, config.model.max_positions)
        self.batches = token_batches(self.ids, config.train.batch_tokens, None)
        self.tokenizers = prepared.tokenizers

    @torch.no_grad()
    def evaluate(self, model: Transformer, device: torch.device, precision: str, config: Config) -> _ValidationResult:
        model.eval()
        loss = nll = 0.0
        tokens = 0
        hypotheses = [""] * len(self.pairs)
        search = SearchConfig(beam_size=1, max_len_a=config.decode.max_len_a, max_len_b=config.decode.max_len_b)
        with autocast(device, precision):
            for indices in self.batches:
                batch = collate(self.ids, indices).to(device)
                batch_loss, batch_nll = smoothed_loss(model(batch.src, batch.tgt_in), batch.tgt_out,
                                                      config.train.label_smoothing)
                loss, nll, tokens = loss + float(batch_loss), nll + float(batch_nll), tokens + batch.n_tokens
                for index, hyp in zip(indices.tolist(), greedy(model, batch.src, search, model.max_output_len)):
                    hypotheses[index] = self.tokenizers.tgt.decode(hyp.tokens)
            figure = self._attention_figure(model, device)
        model.train()
        scores = corpus_scores(hypotheses, [[t for _, t in self.pairs]])
        scalars = {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50)),
                   "bleu": scores.bleu, "chrf": scores.chrf}
        return _ValidationResult(scalars, self._samples(hypotheses), figure)

    def _samples(self, hypotheses: list[str], count: int = 4) -> str:
        rows = ["| source | reference | hypothesis |", "|---|---|---|"]
        for (src, ref), hyp in list(zip(self.pairs, hypotheses))[:count]:
            rows.append(f"| {src} | {ref} | {hyp} |".replace("\n", " "))
        return "\n".join(rows)

    def _attention_figure(self, model: Transformer, device: torch.device):
        from .attention import cross_attention_figure, figures_available

        if not figures_available() or not self.pairs:
            return None
        return cross_attention_figure(model, self.tokenizers, self.pairs[0][0], device)
