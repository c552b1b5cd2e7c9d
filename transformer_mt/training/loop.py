"""The training loop: epochs of token-bucketed updates, with validation, checkpoints and stopping."""
from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import TypeVar

import torch

from ..config import Config
from ..data.batching import Batch, Shapes, collate, epoch_batches
from ..errors import StoppedByRank0, UserError
from ..model.device import (
    attention_kernels,
    pick_device,
    pick_precision,
    row_multiple,
    set_fp32_matmuls,
    slow_precision_warning,
)
from ..model.transformer import Transformer, count_parameters
from .checkpoints import Checkpoints
from .distributed import Distributed
from .parent import Start
from .reporting import Report
from .setup import PreparedRun
from .state import TrainState, own_rng_state, rng_state, set_rng_state
from .step import Updater, UpdateResult
from .validation import ValidationSet, early_stopping

T = TypeVar("T")
_END = object()


def prepared_ahead(items: Iterator[T], enabled: bool) -> Iterator[T]:
    """`items`, each next one made in a thread while the caller works on the current one: on a GPU
    the next update's batches are collated and pinned while the GPU computes this one's."""
    if not enabled:
        yield from items
        return
    with ThreadPoolExecutor(1, thread_name_prefix="collate") as pool:
        upcoming = pool.submit(next, items, _END)
        while (item := upcoming.result()) is not _END:
            upcoming = pool.submit(next, items, _END)
            yield item


class Trainer:
    def __init__(self, config: Config, prepared: PreparedRun, distributed: Distributed | None = None,
                 start: Start | None = None):
        self.config, self.prepared = config, prepared
        self.dist = distributed or Distributed()
        tc, tokenizers = config.train, prepared.tokenizers
        self.device = pick_device(tc.device)
        self.precision = pick_precision(tc.precision, self.device)
        set_fp32_matmuls(self.device, tc.tf32)
        self.shapes = Shapes(tc.length_multiple, row_multiple(tc.row_multiple, self.device, self.precision))
        torch.manual_seed(tc.seed)
        self.model = Transformer(config.model, tokenizers.src.vocab_size, tokenizers.tgt.vocab_size,
                                 shared_vocab=tokenizers.joint).to(self.device)
        self.updater = Updater(self.model, tc, self.device, self.precision, self.dist)
        self.state = TrainState()
        self.report = Report(prepared.run.root, self.dist.is_main, self.dist.world_size, tc.log_every, self.device)
        self.checkpoints = Checkpoints(prepared.run, tc.keep_last, self.report.message)
        self.valid = ValidationSet(prepared, config)
        self._signals = 0
        if prepared.resumed:
            self._restore()
        elif start is not None:
            self._start_from(start)

    def fit(self) -> TrainState:
        """Train until a stop reason (a budget, early stopping, Ctrl-C); validate and save at the end."""
        self._announce()
        self._start = time.monotonic()
        self.report.open_progress(self.config.train.max_steps, self.state.step)
        try:
            with self._stopping_on_signals(), attention_kernels(self.device, self.config.train.sdpa_backends):
                reason = self._train()
                self._finish(reason)
        finally:
            self.report.close()
        return self.state

    def _train(self) -> str:
        tc = self.config.train
        reason = self._budget_spent()  # a resumed run may have nothing left to do
        while reason is None:
            if tc.max_epochs is not None and self.state.epoch >= tc.max_epochs:
                return f"reached train.max_epochs={tc.max_epochs}"
            for micro in prepared_ahead(self._rest_of_epoch(), self.device.type == "cuda"):
                reason = self._update(micro)
                if reason is not None:
                    return reason
            self.state.epoch += 1
            self.state.position = 0
        return reason

    def _rest_of_epoch(self) -> Iterator[list[Batch]]:
        """The micro-batches of each update left in the current epoch (all of it, unless resumed mid-epoch)."""
        tc, ids = self.config.train, self.prepared.train_ids
        plan = epoch_batches(ids, tc.batch_tokens, tc.seed, self.state.epoch, self.dist.rank, self.dist.world_size,
                             self.shapes, self.prepared.mixture)
        pin = self.device.type == "cuda"
        for position in range(self.state.position, math.ceil(len(plan) / tc.accumulate)):
            batches = [collate(ids, plan[i], self.shapes)
                       for i in range(position * tc.accumulate, min(len(plan), (position + 1) * tc.accumulate))]
            yield [batch.pinned() for batch in batches] if pin else batches

    def _update(self, micro: list[Batch]) -> str | None:
        """One update, then whatever falls due at its step; the reason to stop, agreed by every rank."""
        result = self.updater.update(micro)
        self.state.position += 1
        if not result.finite:
            self._non_finite(result)
            return self.dist.agree_on_stop(self._budget_spent(), self.device)
        tc = self.config.train
        self.state.step += 1
        self.report.update(self.state.step, result, self.updater.lr)
        early_stop, due = None, self.state.step % tc.log_every == 0
        if self.state.step % tc.valid_every == 0:
            early_stop, due = self._validate_and_save(), True
        elif self.state.step % tc.checkpoint_every == 0:
            self._save()
            due = True
        if self.dist.grouped and not due:
            # Ranks agree (a collective, a wait for the GPU) only at log and save steps; between them
            # only the step budget, the same on every rank, can stop them.
            return self._steps_spent()
        return self.dist.agree_on_stop(early_stop or self._budget_spent(), self.device)

    def _non_finite(self, result: UpdateResult) -> None:
        if result.scaler_skipped:
            self.state.scaler_skips += 1
            return
        loss = float(result.loss * result.scale)
        if self.config.train.nonfinite == "skip":
            self.state.skipped_batches += 1
            self.report.message(f"warning: non-finite loss or gradients (loss {loss}) at step "
                                f"{self.state.step + 1}: batch skipped ({self.state.skipped_batches} so far)")
            return
        if not self.dist.is_main:  # every rank sees the all-reduced gradients; rank 0 says it once
            raise StoppedByRank0()
        raise UserError(f"non-finite loss or gradients (loss {loss}) at step {self.state.step + 1}; the last "
                        f"good checkpoint is {self.prepared.run.last} (resume with a lower train.lr, or set "
                        f"train.nonfinite=skip)")

    def _steps_spent(self) -> str | None:
        max_steps = self.config.train.max_steps
        if max_steps is not None and self.state.step >= max_steps:
            return f"reached train.max_steps={max_steps}"
        return None

    def _budget_spent(self) -> str | None:
        tc = self.config.train
        if reason := self._steps_spent():
            return reason
        if tc.max_minutes is not None and time.monotonic() - self._start >= tc.max_minutes * 60:
            return f"used the train.max_minutes={tc.max_minutes} budget"
        if self._signals:
            return "interrupted"
        return None

    def _validate_and_save(self) -> str | None:
        """Rank 0 validates while the others wait in the save; the early-stopping reason, if any."""
        improved, reason = False, None
        if self.dist.is_main:
            result = self.valid.evaluate(self.model, self.device, self.precision)
            improved, reason = early_stopping(self.state, result.scalars["bleu"], self.config.train.patience)
            self.report.validation(self.state.step, result, improved)
        self._save(best=improved)
        return reason

    def _save(self, best: bool = False) -> None:
        """Rank 0 writes, with every rank's generators; every rank learns whether it could, so that all
        stop together if not."""
        rng = self.dist.gather(rng_state(self.device))
        error = self.checkpoints.write(self._payload(rng), self.state.step, best) if self.dist.is_main else None
        if self.dist.any_rank(error is not None, self.device):
            raise error if error is not None else StoppedByRank0()

    def _payload(self, rng: list[dict]) -> dict:
        tokenizers = self.prepared.tokenizers
        return {
            **self.updater.state_dict(),
            "rng": rng,  # one state per rank
            "state": asdict(self.state),
            "config": self.config.to_dict(),
            "corpus": self.prepared.corpus_key,  # which prepared corpus the run trains on
            "vocab": {"src": tokenizers.src.vocab_size, "tgt": tokenizers.tgt.vocab_size, "joint": tokenizers.joint},
        }

    def _restore(self) -> None:
        state = self.checkpoints.newest_good()
        if state.get("corpus") != self.prepared.corpus_key:
            if not self.dist.is_main:  # every rank sees it; rank 0 says it once
                raise StoppedByRank0()
            raise UserError(f"cannot resume {self.prepared.run.root}: its checkpoints were trained on another "
                            f"prepared corpus than the one in {self.prepared.run.store} (start a new run, or "
                            f"restore that corpus)")
        self.updater.load_state_dict(state)
        set_rng_state(own_rng_state(state["rng"], self.dist.rank), self.device)
        self.state = TrainState(**state["state"])

    def _start_from(self, start: Start) -> None:
        """A fine-tuning's first state: the parent's weights and what train.init_keep keeps (moments,
        schedule, best BLEU); the step count and every other counter start afresh."""
        keep = self.config.train.init_keep
        self.updater.start_from(start.state, optimizer="optimizer" in keep, schedule="schedule" in keep)
        if "best" in keep:
            self.state.best_bleu = start.state["state"]["best_bleu"]
        self.report.fine_tuning(start.lineage, keep)

    def _finish(self, reason: str) -> None:
        if self.state.step % self.config.train.valid_every != 0 or self.state.step == 0:
            self._validate_and_save()
        self.report.message(f"stopped: {reason}. step {self.state.step}, best valid BLEU "
                            f"{max(self.state.best_bleu, 0):.2f}; checkpoints in {self.prepared.run.checkpoints}")
        if reason == "interrupted":
            self.report.message(f"resume with: make train CONFIG=... ARGS=\"train.resume=true "
                                f"run.name={self.config.run.name}\"")

    def _announce(self) -> None:
        self.report.message(f"model: {count_parameters(self.model) / 1e6:.1f}M parameters, device {self.device}, "
                            f"precision {self.precision}, {self.dist.world_size} process(es)")
        if self.updater.ddp is not None:
            self.report.message(f"data-parallel: {type(self.updater.ddp).__name__} over {self.dist.world_size} "
                                f"process(es), {self.dist.backend()} backend")
        if warning := slow_precision_warning(self.precision, self.device):
            self.report.message(f"warning: {warning}")

    @contextlib.contextmanager
    def _stopping_on_signals(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM: stop after this step and save; a second Ctrl-C leaves at once
        (checkpoint writes are atomic)."""
        def on_signal(signum, frame) -> None:
            self._signals += 1
            if self._signals > 1:
                raise KeyboardInterrupt
            self.report.message("\nstopping after this step and saving (Ctrl-C again to quit at once)")

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
