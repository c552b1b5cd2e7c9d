"""Translate text with a trained run (config, tokenizers and weights from the run folder).

TextTranslator holds what every backend shares (tokenising, truncation, batching by length, empty
lines, the run's decode defaults); Translator decodes with the PyTorch model, exported.py's
ExportedTranslator with a CTranslate2 export.
"""
from __future__ import annotations

import abc
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .batching import pad_batch
from .config import Config, DecodeConfig, from_dict
from .errors import UserError
from .model import Transformer
from .run import RunPaths, latest_run, open_run
from .runtime import DTYPES, attention_kernels, pick_device, slow_precision_warning
from .search import Hypothesis, SearchConfig, beam_search, greedy
from .tokenizer import EOS, TokenizerPair


@dataclass
class Translation:
    text: str
    score: float


class TextTranslator(abc.ABC):
    """Set by a backend: tokenizers, decode (the default search), max_source (source tokens kept before
    EOS), checkpoint and step (what the model was trained to), and _search."""
    tokenizers: TokenizerPair
    decode: DecodeConfig
    max_source: int
    checkpoint: Path
    step: int

    def search_config(self, beam_size: int | None = None, max_len_a: float | None = None,
                      max_len_b: int | None = None, nbest: int = 1) -> SearchConfig:
        """The run's decode section, with the given (non-None) values instead."""
        d = self.decode
        return SearchConfig(beam_size=d.beam_size if beam_size is None else beam_size,
                            length_penalty=d.length_penalty, alpha=d.alpha,
                            max_len_a=d.max_len_a if max_len_a is None else max_len_a,
                            max_len_b=d.max_len_b if max_len_b is None else max_len_b, min_len=d.min_len, nbest=nbest)

    def encode(self, sentences: list[str]) -> list[list[int]]:
        for number, sentence in enumerate(sentences, 1):
            try:  # bytes that were not UTF-8 reach us as lone surrogates (Python's surrogateescape)
                sentence.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"sentence {number} is not UTF-8 text") from None
        encoded = []
        for number, ids in enumerate(self.tokenizers.src.encode_batch(sentences), 1):
            if len(ids) > self.max_source:
                print(f"warning: sentence {number} has {len(ids)} tokens; truncated to the model's "
                      f"{self.max_source}", file=sys.stderr)
                ids = ids[: self.max_source]
            encoded.append(ids + [EOS])
        return encoded

    def translate(self, sentences: list[str], search: SearchConfig,
                  batch_size: int | None = None) -> list[list[Translation]]:
        """n-best translations per sentence, in input order; empty input gives an empty translation.
        Batches hold `batch_size` sentences (default: the run's decode.batch_size)."""
        batch_size = batch_size or self.decode.batch_size
        encoded = self.encode(sentences)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in sentences]
        order = sorted((i for i, s in enumerate(sentences) if s.strip()), key=lambda i: len(encoded[i]))
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        searched = self._search_batches([[encoded[i] for i in chunk] for chunk in chunks], search)
        for chunk, batch_hypotheses in zip(chunks, searched):
            for index, hyps in zip(chunk, batch_hypotheses):
                results[index] = [Translation(self.tokenizers.tgt.decode(h.tokens), h.score) for h in hyps]
        return results

    def empty_note(self, sentences: list[str], texts: list[str]) -> str | None:
        """A note when non-empty sentences got empty translations: a blank line alone looks like a bug of
        ours, and an undertrained model (one that emits end-of-sentence first) is the usual cause."""
        empty = sum(bool(sentence.strip()) and not text for sentence, text in zip(sentences, texts))
        if not empty:
            return None
        return (f"note: {empty} of {len(sentences)} translations are empty (the model stopped at once: "
                f"{self.checkpoint} is from step {self.step}; an undertrained model does this)")

    @abc.abstractmethod
    def _search(self, batch: list[list[int]], search: SearchConfig) -> list[list[Hypothesis]]:
        """The n-best hypotheses of each sentence of a batch (token ids, each ending in EOS)."""

    def _search_batches(self, batches: list[list[list[int]]],
                        search: SearchConfig) -> Iterator[list[list[Hypothesis]]]:
        """_search of each batch, in order; a backend that decodes batches in parallel overrides it."""
        return (self._search(batch, search) for batch in batches)


class Translator(TextTranslator):
    """The PyTorch model of a run folder."""

    def __init__(self, run: RunPaths, checkpoint: Path | None = None, device: str = "auto",
                 precision: str = "fp32"):
        self.run = run
        path = checkpoint or run.default_checkpoint()
        self.device = pick_device(device, setting="--device")
        state = ckpt.load(path, map_location=self.device)
        self.config: Config = from_dict(state["config"], origin=str(path))
        self.tokenizers = TokenizerPair.load(run.src_tokenizer, run.tgt_tokenizer, state["vocab"]["joint"])
        self.model = Transformer(self.config.model, state["vocab"]["src"], state["vocab"]["tgt"],
                                 shared_vocab=state["vocab"]["joint"]).to(self.device)
        self.model.load_state_dict(state["model"])
        # Inference casts the weights once (autocast would re-cast every weight at every step).
        self.model.eval().to(DTYPES[precision])
        if warning := slow_precision_warning(precision, self.device):
            print(f"warning: {warning}", file=sys.stderr)
        self.checkpoint, self.step = path, state["state"]["step"]
        self.precision = precision
        self.decode = self.config.decode
        self.max_source = self.config.model.max_positions - 1

    @classmethod
    def from_args(cls, run_dir: str | None, checkpoint: str | None, runs_root: str = "runs",
                  device: str = "auto", precision: str = "fp32") -> "Translator":
        """--checkpoint FILE (its run folder is the one above checkpoints/), --run DIR, or the latest run."""
        if checkpoint:
            path = Path(checkpoint)
            if not path.is_file():
                raise UserError(f"checkpoint not found: {path}")
            if run_dir:
                return cls(open_run(Path(run_dir)), path, device, precision)
            try:
                run = open_run(path.resolve().parent.parent)
            except UserError:
                raise UserError(f"{path} is not in a run folder's checkpoints/: "
                                "name its run folder with --run") from None
            return cls(run, path, device, precision)
        run = open_run(Path(run_dir)) if run_dir else latest_run(Path(runs_root))
        return cls(run, None, device, precision)

    @torch.no_grad()
    def _search(self, batch: list[list[int]], search: SearchConfig) -> list[list[Hypothesis]]:
        src = pad_batch(batch, self.device)
        with attention_kernels(self.device):
            if search.beam_size == 1:
                return [[h] for h in greedy(self.model, src, search, self.model.max_output_len)]
            return beam_search(self.model, src, search, self.model.max_output_len)
