"""Translate text with a trained run's PyTorch model (config, tokenizers and weights from the run folder).

text_translator.py's TextTranslator holds what every backend shares (tokenising, truncation, batching
by length, empty lines, the run's decode defaults); exported.py's ExportedTranslator decodes a
CTranslate2 export instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..config import Config, DecodeConfig, from_dict
from ..data.batching import pad_batch
from ..data.tokenizer import TokenizerPair
from ..model import checkpoint as ckpt
from ..model.device import DTYPES, attention_kernels, pick_device, slow_precision_warning
from ..model.transformer import Transformer
from ..run_folder import RunPaths, find_checkpoint
from .search import beam_search, greedy
from .search_rules import Hypothesis
from .translator import TextTranslator


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
        self.max_positions = self.config.model.max_positions

    @classmethod
    def from_args(cls, run_dir: str | None, checkpoint: str | None, runs_root: str = "runs",
                  device: str = "auto", precision: str = "fp32") -> "Translator":
        """The model that --run, --checkpoint and --runs name (run_folder.find_checkpoint)."""
        run, path = find_checkpoint(run_dir, checkpoint, runs_root)
        return cls(run, path, device, precision)

    @torch.no_grad()
    def _search(self, batch: list[list[int]], decode: DecodeConfig, nbest: int) -> list[list[Hypothesis]]:
        src = pad_batch(batch, self.device)
        with attention_kernels(self.device):
            if decode.beam_size == 1:
                return [[h] for h in greedy(self.model, src, decode, self.model.max_output_len)]
            return beam_search(self.model, src, decode, self.model.max_output_len, nbest)
