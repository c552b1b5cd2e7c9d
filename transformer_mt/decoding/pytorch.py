"""Translate text with a trained run's PyTorch model (config, tokenizers and weights from the run folder).

translator.py's TextTranslator holds what every backend shares (tokenising, truncation, batching by
length, empty lines, the run's decode defaults); ctranslate2.py's ExportedTranslator decodes a
CTranslate2 export instead.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import Config, DecodeConfig
from ..data.batching import pad_batch
from ..data.tokenizer import BOS
from ..model.checkpoint import Trained
from ..model.device import DTYPES, attention_kernels, pick_device, slow_precision_warning
from ..model.transformer import Transformer
from ..run_folder import RunPaths
from .search import beam_search, greedy
from .search_rules import Hypothesis
from .translator import TextTranslator, alignment_layer


class Translator(TextTranslator):
    """The PyTorch model of a run folder."""

    def __init__(self, run: RunPaths, checkpoint: Path | None = None, device: str = "auto",
                 precision: str = "fp32"):
        self.run, self.notes = run, []
        self.device = pick_device(device, setting="--device")
        trained = Trained.load(run, checkpoint)
        self.config: Config = trained.config
        self.tokenizers = trained.tokenizers
        vocab = trained.vocab
        self.model = Transformer(self.config.model, vocab["src"], vocab["tgt"], shared_vocab=vocab["joint"])
        self.model.to(self.device).load_state_dict(trained.weights)
        # Inference casts the weights once (autocast would re-cast every weight at every step).
        self.model.eval().to(DTYPES[precision])
        if warning := slow_precision_warning(precision, self.device):
            self.notes.append(f"warning: {warning}")
        self.checkpoint, self.step = trained.path, trained.step
        self.precision = precision
        self.decode = self.config.decode
        self.max_positions = self.config.model.max_positions

    @torch.no_grad()
    def _search(self, batch: list[list[int]], decode: DecodeConfig, nbest: int) -> list[list[Hypothesis]]:
        src = pad_batch(batch, self.device)
        with attention_kernels(self.device):
            if decode.beam_size == 1:
                return [[h] for h in greedy(self.model, src, decode, self.model.max_output_len)]
            return beam_search(self.model, src, decode, self.model.max_output_len, nbest)

    @torch.no_grad()
    def _attention(self, sources: list[list[int]], targets: list[list[int]]) -> list[list[list[float]]]:
        src = pad_batch(sources, self.device)
        tgt_in = pad_batch([[BOS] + ids for ids in targets], self.device)
        with attention_kernels(self.device):
            cross = self.model.attention_maps(src, tgt_in).cross
        weights = cross[alignment_layer(len(cross))].float().mean(1).cpu()  # (B, T, S)
        return [weights[b, : len(targets[b]), : len(sources[b])].tolist() for b in range(len(sources))]
