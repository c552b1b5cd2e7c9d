"""Validation during training: loss, perplexity, greedy BLEU/chrF and a few samples on a capped,
length-sorted part of the validation split; and early stopping on its BLEU."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from ..config import Config
from ..data.batching import collate, token_batches
from ..data.corpus import Pair
from ..data.store import encode_pairs
from ..decoding.scores import corpus_scores
from ..decoding.search import greedy
from ..model.device import autocast
from ..model.transformer import Transformer
from .objective import smoothed_loss
from .setup import PreparedRun
from .state import TrainState


@dataclass
class ValidationResult:
    scalars: dict[str, float]  # loss, nll, ppl, bleu, chrf
    samples_markdown: str
    figure: object | None  # the first sentence's cross-attention (matplotlib), when matplotlib is installed
    by_corpus: dict[str, dict[str, float]] = field(default_factory=dict)  # data.corpora: bleu and chrf of each


class ValidationSet:
    """A capped, length-sorted subset of the validation split, encoded once: the first
    train.valid_max_sentences pairs of the split, or of each corpus's split with data.corpora (the
    run's BLEU is then that of all of them together; each corpus's is reported too)."""

    def __init__(self, prepared: PreparedRun, config: Config):
        self.pairs: list[Pair] = []
        self.groups: dict[str, slice] = {}
        for name, pairs in (prepared.valid_by_corpus or {"": prepared.valid}).items():
            start = len(self.pairs)
            self.pairs += pairs[: config.train.valid_max_sentences]
            self.groups[name] = slice(start, len(self.pairs))
        self.ids = encode_pairs(self.pairs, prepared.tokenizers, config.model.max_positions)
        self.batches = token_batches(self.ids, config.train.batch_tokens, None)
        self.tokenizers = prepared.tokenizers
        self.decode = replace(config.decode, beam_size=1)
        self.label_smoothing = config.train.label_smoothing

    @torch.no_grad()
    def evaluate(self, model: Transformer, device: torch.device, precision: str) -> ValidationResult:
        model.eval()
        loss = nll = 0.0
        tokens = 0
        hypotheses = [""] * len(self.pairs)
        with autocast(device, precision):
            for indices in self.batches:
                batch = collate(self.ids, indices).to(device)
                batch_loss, batch_nll = smoothed_loss(model(batch.src, batch.tgt_in), batch.tgt_out,
                                                      self.label_smoothing)
                loss, nll, tokens = loss + float(batch_loss), nll + float(batch_nll), tokens + batch.n_tokens
                for index, hyp in zip(indices.tolist(), greedy(model, batch.src, self.decode, model.max_output_len)):
                    hypotheses[index] = self.tokenizers.tgt.decode(hyp.tokens)
            figure = self._attention_figure(model, device)
        model.train()
        scores = corpus_scores(hypotheses, [[t for _, t in self.pairs]])
        scalars = {"loss": loss / tokens, "nll": nll / tokens, "ppl": math.exp(min(nll / tokens, 50)),
                   "bleu": scores.bleu, "chrf": scores.chrf}
        return ValidationResult(scalars, self._samples(hypotheses), figure, self._by_corpus(hypotheses))

    def _by_corpus(self, hypotheses: list[str]) -> dict[str, dict[str, float]]:
        if list(self.groups) == [""]:
            return {}
        scores = {name: corpus_scores(hypotheses[part], [[t for _, t in self.pairs[part]]])
                  for name, part in self.groups.items()}
        return {name: {"bleu": s.bleu, "chrf": s.chrf} for name, s in scores.items()}

    def _samples(self, hypotheses: list[str], count: int = 4) -> str:
        """The first `count` sentences, shared among the corpora."""
        each = max(1, count // len(self.groups))
        rows = ["| source | reference | hypothesis |", "|---|---|---|"]
        for part in self.groups.values():
            for (src, ref), hyp in list(zip(self.pairs[part], hypotheses[part]))[:each]:
                rows.append(f"| {src} | {ref} | {hyp} |".replace("\n", " "))
        return "\n".join(rows)

    def _attention_figure(self, model: Transformer, device: torch.device):
        from ..decoding.heatmaps import cross_attention_figure, figures_available

        if not figures_available() or not self.pairs:
            return None
        return cross_attention_figure(model, self.tokenizers, self.pairs[0][0], device)


def early_stopping(state: TrainState, bleu: float, patience: int | None) -> tuple[bool, str | None]:
    """Record a validation BLEU in `state`: whether it is the best so far, and the reason to stop
    when `patience` validations in a row have not improved on the best."""
    improved = bleu > state.best_bleu
    if improved:
        state.best_bleu, state.stale_validations = bleu, 0
    else:
        state.stale_validations += 1
    if patience is not None and state.stale_validations >= patience:
        return improved, f"no better validation BLEU in {patience} validations (train.patience)"
    return improved, None
