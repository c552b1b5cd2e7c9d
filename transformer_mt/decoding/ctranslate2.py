"""Translate with a CTranslate2 export of a run (export/ctranslate2.py), with the same interface and
search as the PyTorch Translator.

How our search maps onto CTranslate2's translate_batch:
- the limit of a·source_length + b tokens is per sentence, CTranslate2's per call: a batch is decoded
  with its largest limit (max_decoding_length = limit + 1: CTranslate2 counts the EOS step), and a
  hypothesis longer than its own sentence's limit is cut to it (small calls, one per limit, made int8
  decoding several times slower);
- hypotheses come back with their EOS (return_end_token), so the length a penalty sees counts it, as ours;
- beam search: CTranslate2 divides a finished hypothesis's summed log-probability by length^p. With
  p = our alpha this is our power penalty; GNMT's ((5 + length) / 6)^alpha it cannot express, so it
  runs with p = alpha, and each hypothesis's sum is recovered (score × length^p) and ranked with GNMT.
  That ranking is ours, except where more than beam_size hypotheses finish by the same step and
  CTranslate2 keeps the best beam_size under p instead. (p is never 0: with no penalty CTranslate2
  stops a sentence as soon as its best beam finishes, which ours does not.)
- where ours forces EOS at the limit, CTranslate2 goes on or ends the hypothesis without it: greedy
  output cut to the limit is ours (the same tokens); beam search can differ only for a sentence whose
  hypotheses reach its limit (docs/deployment.md).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..config import DecodeConfig
from ..data.tokenizer import EOS, TokenizerPair, token_budget
from ..errors import UserError
from .ctranslate2_folder import SRC_TOKENIZER, TGT_TOKENIZER, read_meta, require_ctranslate2
from .search_rules import Hypothesis, length_penalty, output_limit
from .translator import TextTranslator


class ExportedTranslator(TextTranslator):
    """On CPU, `threads` single-threaded workers each decode a batch at a time (CTranslate2's
    inter_threads; default: one per core), all batches submitted at once, which beat one worker with all
    the threads (docs/deployment.md)."""

    def __init__(self, folder: Path, device: str = "auto", threads: int = 0):
        self.notes: list[str] = []
        ct2 = require_ctranslate2()
        meta = read_meta(folder)
        gpus = ct2.get_cuda_device_count()
        if device == "cuda" and not gpus:
            raise UserError("--device is cuda but no CUDA GPU is visible: use auto or cpu")
        self.device = "cuda" if device == "cuda" or (device == "auto" and gpus) else "cpu"
        workers = 1 if self.device == "cuda" else threads or os.cpu_count() or 1
        self.parallel_batches = workers  # each worker a batch of its own, on its own core
        try:
            self.model = ct2.Translator(str(folder), device=self.device, compute_type="default",
                                        inter_threads=workers, intra_threads=1 if self.device == "cpu" else threads)
        except (RuntimeError, ValueError) as err:
            raise UserError(f"CTranslate2 cannot load {folder}: {err}") from None
        self.tokenizers = TokenizerPair.load(folder / SRC_TOKENIZER, folder / TGT_TOKENIZER, meta.joint_vocab)
        self.decode = meta.decode_config
        self.max_positions, self.max_output = meta.max_positions, token_budget(meta.max_positions)
        self.checkpoint, self.step, self.quantization = Path(meta.checkpoint), meta.step, meta.quantization
        self.src_tokens = self.tokenizers.src.tokens()
        self.tgt_tokens = self.tokenizers.tgt.tokens()
        self.tgt_ids = {token: i for i, token in enumerate(self.tgt_tokens)}

    def _search(self, batch: list[list[int]], decode: DecodeConfig, nbest: int) -> list[list[Hypothesis]]:
        return next(self._search_batches([batch], decode, nbest))

    def _search_batches(self, batches: list[list[list[int]]], decode: DecodeConfig, nbest: int,
                        attention: bool = False) -> Iterator[list[list[Hypothesis]]]:
        """Every batch is submitted before the first is awaited, so that the workers decode in parallel;
        with `attention`, each hypothesis keeps the alignment layer's weights (they cost the search next
        to nothing: docs/serving.md)."""
        submitted = []
        for batch in batches:
            limits = [output_limit(len(ids) - 1, decode.max_len_a, decode.max_len_b, self.max_output) for ids in batch]
            pending = self.model.translate_batch([[self.src_tokens[t] for t in ids] for ids in batch],
                                                 asynchronous=True, return_attention=attention,
                                                 **self._options(decode, max(limits)))
            submitted.append((pending, limits))
        for pending, limits in submitted:
            yield [self._hypotheses(output.result(), decode, limit)[:nbest] for output, limit in zip(pending, limits)]

    @staticmethod
    def _penalty(decode: DecodeConfig) -> float:
        """CTranslate2's length_penalty: 0 for greedy (raw sums), else alpha (never 0, see above)."""
        return 0.0 if decode.beam_size == 1 else max(decode.alpha, 1e-3)

    def _options(self, decode: DecodeConfig, limit: int) -> dict:
        beam = decode.beam_size > 1
        return dict(beam_size=decode.beam_size, num_hypotheses=decode.beam_size if beam else 1,
                    length_penalty=self._penalty(decode), max_decoding_length=limit + 1,
                    min_decoding_length=decode.min_len, return_scores=True, return_end_token=True,
                    max_input_length=0, max_batch_size=0)

    def _hypotheses(self, output, decode: DecodeConfig, limit: int) -> list[Hypothesis]:
        hypotheses = []
        attention = output.attention or [None] * len(output.hypotheses)
        for tokens, score, weights in zip(output.hypotheses, output.scores, attention):
            ids = [self.tgt_ids[token] for token in tokens]
            summed = score * len(ids) ** self._penalty(decode)
            ids = ids[:-1] if ids and ids[-1] == EOS and len(ids) <= limit + 1 else ids[:limit]
            normalised = summed / length_penalty(len(ids) + 1, decode.length_penalty, decode.alpha) \
                if decode.beam_size > 1 else summed
            hypotheses.append(Hypothesis(ids, normalised, summed, weights[: len(ids)] if weights else None))
        return sorted(hypotheses, key=lambda h: -h.score)

    def _attention(self, sources: list[list[int]], targets: list[list[int]]) -> list[list[list[float]]]:
        """The export's alignment layer and heads (written at export: translator.ALIGNMENT_LAYER, all
        heads), while it decodes the target as a forced prefix."""
        outputs = self.model.translate_batch([[self.src_tokens[t] for t in ids] for ids in sources],
                                             target_prefix=[[self.tgt_tokens[t] for t in ids] for ids in targets],
                                             beam_size=1, return_attention=True, max_input_length=0,
                                             max_decoding_length=max(map(len, targets)), max_batch_size=0)
        return [output.attention[0] for output in outputs]
