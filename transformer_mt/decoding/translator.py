"""What every translator offers, whatever decodes: the run's PyTorch model (pytorch.py) or a
CTranslate2 export (ctranslate2.py). Sentences in, their n-best translations out, in input order.

No PyTorch here: translating with an export never loads it.
"""
from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..config import DecodeConfig
from ..data.tokenizer import TokenizerPair, source_ids, token_budget
from ..errors import UserError
from .search_rules import Hypothesis

# The decoder layer whose cross-attention (averaged over its heads) aligns a translation to its source:
# the penultimate one where there are two or more. Measured against the others in docs/serving.md
# ("Inline tags"); a CTranslate2 export is written with the same choice.
ALIGNMENT_LAYER = -2


def alignment_layer(decoder_layers: int) -> int:
    """ALIGNMENT_LAYER as an index from the end that a model of `decoder_layers` layers has."""
    return ALIGNMENT_LAYER if decoder_layers >= -ALIGNMENT_LAYER else -1


@dataclass(frozen=True)
class Alignment:
    """A translation's tokens against its source's: each target token's characters in the translation's
    text, and the source token it attends to most (an index into the source ids)."""
    target_spans: list[tuple[int, int]]
    source_of: list[int]


@dataclass
class Translation:
    text: str
    score: float
    alignment: Alignment | None = None  # set where it was asked for (a server's HTML requests)


class TextTranslator(abc.ABC):
    """Set by a backend: tokenizers, decode (the run's decode section: the default search),
    max_positions (the model's), checkpoint and step (what the model was trained to), and _search."""
    tokenizers: TokenizerPair
    decode: DecodeConfig
    max_positions: int
    checkpoint: Path
    step: int
    # Batches it decodes at once without slowing one another down (a server decodes that many).
    parallel_batches: int = 1
    # What loading said (a precision this CPU emulates): the caller shows them, or not.
    notes: list[str]

    def encode(self, sentences: list[str], notes: list[str] | None = None) -> list[list[int]]:
        """Source ids as the encoder reads them; a note for each sentence cut to the model's positions
        goes to `notes` (the caller's to show: in a server, "sentence N" is N of a merged batch)."""
        for number, sentence in enumerate(sentences, 1):
            try:  # bytes that were not UTF-8 reach us as lone surrogates (Python's surrogateescape)
                sentence.encode("utf-8")
            except UnicodeEncodeError:
                raise UserError(f"sentence {number} is not UTF-8 text") from None
        budget, encoded = token_budget(self.max_positions), []
        for number, ids in enumerate(self.tokenizers.src.encode_batch(sentences), 1):
            if len(ids) > budget and notes is not None:
                notes.append(f"warning: sentence {number} has {len(ids)} tokens; truncated to the model's {budget}")
            encoded.append(source_ids(ids, self.max_positions))
        return encoded

    def translate(self, sentences: list[str], decode: DecodeConfig | None = None, nbest: int = 1,
                  notes: list[str] | None = None) -> list[list[Translation]]:
        """The `nbest` best translations of each sentence, in input order, searched as `decode` says (default:
        the run's decode section); an empty sentence gets an empty translation. Notes on sentences cut
        to the model's positions are appended to `notes` when one is given."""
        return self.translate_encoded(self.encode(sentences, notes), decode, nbest)

    def translate_encoded(self, encoded: list[list[int]], decode: DecodeConfig | None = None, nbest: int = 1,
                          align: list[bool] | None = None) -> list[list[Translation]]:
        """`translate` from source ids as `encode` returns them (a server tokenizes a request once, as it
        arrives); a sentence without tokens (nothing but EOS) gets an empty translation. Where align[i],
        each of sentence i's hypotheses carries its Alignment: from the search's own attention where the
        backend returns it (CTranslate2), else from one forced pass (`align`)."""
        decode = decode or self.decode
        batch_size = decode.batch_size
        aligning = align is not None and any(align)
        results: list[list[Translation]] = [[Translation("", 0.0)] for _ in encoded]
        found: dict[int, list[Hypothesis]] = {}
        order = sorted((i for i, ids in enumerate(encoded) if len(ids) > 1), key=lambda i: len(encoded[i]))
        chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        searched = self._search_batches([[encoded[i] for i in chunk] for chunk in chunks], decode, nbest, aligning)
        for chunk, batch_hypotheses in zip(chunks, searched):
            for index, hyps in zip(chunk, batch_hypotheses):
                results[index] = [Translation(self.tokenizers.tgt.decode(h.tokens), h.score) for h in hyps]
                found[index] = hyps
        if aligning:
            self._attach_alignments(encoded, results, found, align)
        return results

    def _attach_alignments(self, encoded: list[list[int]], results: list[list[Translation]],
                           found: dict[int, list[Hypothesis]], align: list[bool]) -> None:
        """Alignment of each hypothesis asked for: the search's attention where its tokens are the ones the
        translation's text encodes to (byte-level BPE nearly always), one forced pass for the others."""
        pending = []
        for index in (i for i, wanted in enumerate(align) if wanted and i in found):
            texts = [t.text for t in results[index]]
            for hyp, translation, (ids, spans) in zip(found[index], results[index],
                                                      self.tokenizers.tgt.encode_with_offsets(texts)):
                if hyp.attention is not None and ids == hyp.tokens:
                    translation.alignment = Alignment(spans, [_argmax(row) for row in hyp.attention[: len(ids)]])
                else:
                    pending.append((index, translation))
        if pending:
            forced = self.align([encoded[i] for i, _ in pending], [t.text for _, t in pending])
            for (_, translation), alignment in zip(pending, forced):
                translation.alignment = alignment

    def align(self, encoded: list[list[int]], translations: list[str]) -> list[Alignment]:
        """Each translation aligned to its source ids (as `encode` returns them) by one forced pass of
        the decoder over the translation's tokens (those within the model's positions)."""
        budget = token_budget(self.max_positions)
        targets = [(ids[:budget], spans[:budget])
                   for ids, spans in self.tokenizers.tgt.encode_with_offsets(translations)]
        found: list[Alignment] = [Alignment([], []) for _ in encoded]
        order = sorted((i for i, (ids, _) in enumerate(targets) if ids and len(encoded[i]) > 1),
                       key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.decode.batch_size):
            chunk = order[start : start + self.decode.batch_size]
            rows = self._attention([encoded[i] for i in chunk], [targets[i][0] for i in chunk])
            for index, attention in zip(chunk, rows):
                spans = targets[index][1]
                found[index] = Alignment(spans, [_argmax(row) for row in attention[: len(spans)]])
        return found

    def empty_note(self, sentences: list[str], texts: list[str]) -> str | None:
        """A note when non-empty sentences got empty translations: a blank line alone looks like a bug of
        ours, and an undertrained model (one that emits end-of-sentence first) is the usual cause."""
        empty = sum(bool(sentence.strip()) and not text for sentence, text in zip(sentences, texts))
        if not empty:
            return None
        return (f"note: {empty} of {len(sentences)} translations are empty (the model stopped at once: "
                f"{self.checkpoint} is from step {self.step}; an undertrained model does this)")

    @abc.abstractmethod
    def _search(self, batch: list[list[int]], decode: DecodeConfig, nbest: int) -> list[list[Hypothesis]]:
        """The `nbest` best hypotheses of each sentence of a batch (token ids, each ending in EOS)."""

    @abc.abstractmethod
    def _attention(self, sources: list[list[int]], targets: list[list[int]]) -> list[list[list[float]]]:
        """Per pair, the alignment layer's cross-attention averaged over heads while the decoder reads
        BOS + target: one row per target token (at least), one column per source id."""

    def _search_batches(self, batches: list[list[list[int]]], decode: DecodeConfig, nbest: int,
                        attention: bool = False) -> Iterator[list[list[Hypothesis]]]:
        """_search of each batch, in order; a backend that decodes batches in parallel, or that returns
        the search's attention when `attention` asks for it, overrides it."""
        return (self._search(batch, decode, nbest) for batch in batches)


def _argmax(row: list[float]) -> int:
    return max(range(len(row)), key=row.__getitem__)
