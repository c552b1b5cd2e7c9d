"""The encoded training corpus: token ids flat with offsets, in memory or memory-mapped from a run folder.

On disk (a run's data/train/): src.ids and tgt.ids hold every sentence's token ids back to back
(uint16 when the vocabulary allows, else int32), src.offsets and tgt.offsets where each sentence
starts (int64, one more than there are pairs), and manifest.json, written last: a store without a
complete manifest was cut short and is never used. Every process that trains maps the same files,
so ranks share one copy through the page cache.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np

from .tokenizer import Tokenizer, TokenizerPair, token_budget

FORMAT = 1
SIDES = ("src", "tgt")
_FILES = tuple(f"{side}.{kind}" for side in SIDES for kind in ("ids", "offsets"))


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.int32)


@dataclass
class EncodedCorpus:
    """Token ids of every pair (without EOS/BOS), flat with offsets: pair i's source is
    src_ids[src_offsets[i]:src_offsets[i + 1]]."""
    src_ids: np.ndarray
    src_offsets: np.ndarray  # (N + 1,) int64
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    _longest_sum: int | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.src_offsets) - 1

    def src(self, i: int) -> np.ndarray:
        return self.src_ids[self.src_offsets[i] : self.src_offsets[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_ids[self.tgt_offsets[i] : self.tgt_offsets[i + 1]]

    def lengths(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequence lengths of these pairs as the model sees them: source + EOS, target + BOS (or EOS)."""
        src = self.src_offsets[indices + 1] - self.src_offsets[indices] + 1
        return src, self.tgt_offsets[indices + 1] - self.tgt_offsets[indices] + 1

    def mean_longest(self, chunk: int = 1 << 16) -> float:
        """Mean over pairs of the longer side's length, read in chunks (no corpus-sized temporary)."""
        if self._longest_sum is None:
            total = 0
            for start in range(0, len(self), chunk):
                stop = min(len(self), start + chunk)
                src = np.diff(self.src_offsets[start : stop + 1])
                total += int(np.maximum(src, np.diff(self.tgt_offsets[start : stop + 1])).sum()) + (stop - start)
            self._longest_sum = total
        return self._longest_sum / max(1, len(self))


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of `texts`, each cut to `max_len`, as (flat ids, lengths)."""
    ids = tokenizer.encode_batch(list(texts))
    lengths = np.fromiter((min(len(x), max_len) for x in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(chain.from_iterable(x[:max_len] for x in ids), dtype=id_dtype(tokenizer.vocab_size),
                       count=int(lengths.sum()))
    return flat, lengths


def _offsets(lengths: np.ndarray, start: int = 0) -> np.ndarray:
    return np.concatenate([[start], start + np.cumsum(lengths)]).astype(np.int64)


def encode_pairs(pairs: Sequence[tuple[str, str]], tokenizers: TokenizerPair, max_len: int) -> EncodedCorpus:
    """A small corpus encoded in memory (validation, tests), each side cut to the token budget of
    `max_len` positions (tokenizer.token_budget)."""
    src, src_len = encode_texts(tokenizers.src, [s for s, _ in pairs], token_budget(max_len))
    tgt, tgt_len = encode_texts(tokenizers.tgt, [t for _, t in pairs], token_budget(max_len))
    return EncodedCorpus(src, _offsets(src_len), tgt, _offsets(tgt_len))


@dataclass
class Manifest:
    inputs: str  # fingerprint of what the store was prepared from (config, corpus files)
    key: str  # fingerprint of the store itself: inputs and tokenizers; checkpoints record it
    pairs: int
    id_dtype: str
    file_bytes: dict[str, int]
    report: dict[str, int]  # counts of the preparation (pairs read, kept, held out, skipped, ...)
    format: int = FORMAT
    # With data.corpora: each corpus's name and counts, in store order (its "train" pairs follow the
    # previous corpus's); empty for a run of one corpus.
    corpora: list[dict] = field(default_factory=list)

    def corpus_sizes(self) -> dict[str, int]:
        """Training pairs of each corpus, in store order."""
        return {corpus["name"]: corpus["train"] for corpus in self.corpora}


class StoreWriter:
    """Appends encoded chunks to a store's files; `finish` writes the manifest, last."""

    def __init__(self, folder: Path, dtype: np.dtype):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.dtype, self.pairs = folder, dtype, 0
        self.files = {name: open(folder / name, "wb") for name in _FILES}
        self.ends = {side: 0 for side in SIDES}
        for side in SIDES:
            np.zeros(1, np.int64).tofile(self.files[f"{side}.offsets"])

    def add(self, src: tuple[np.ndarray, np.ndarray], tgt: tuple[np.ndarray, np.ndarray]) -> None:
        """(flat ids, lengths) of each side of the same pairs."""
        for side, (flat, lengths) in zip(SIDES, (src, tgt)):
            flat.astype(self.dtype, copy=False).tofile(self.files[f"{side}.ids"])
            _offsets(lengths, self.ends[side])[1:].tofile(self.files[f"{side}.offsets"])
            self.ends[side] += int(lengths.sum())
        self.pairs += len(src[1])

    def finish(self, inputs: str, key: str, report: dict[str, int], corpora: list[dict] | None = None) -> Manifest:
        for handle in self.files.values():
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        sizes = {name: (self.folder / name).stat().st_size for name in _FILES}
        manifest = Manifest(inputs, key, self.pairs, self.dtype.name, sizes, report, corpora=corpora or [])
        tmp = self.folder / ".manifest.json.tmp"
        tmp.write_text(json.dumps(asdict(manifest), indent=1))
        os.replace(tmp, self.folder / "manifest.json")
        return manifest

    def abandon(self) -> None:
        for handle in self.files.values():
            handle.close()


def read_manifest(folder: Path) -> Manifest | None:
    """The store's manifest if the store is complete (every file there, at its recorded size), else None."""
    try:
        manifest = Manifest(**json.loads((folder / "manifest.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if manifest.format != FORMAT:
        return None
    for name, size in manifest.file_bytes.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return manifest


def open_store(folder: Path, manifest: Manifest) -> EncodedCorpus:
    """The store's arrays, memory-mapped read-only."""
    def load(name: str, dtype) -> np.ndarray:
        if manifest.file_bytes[name] == 0:
            return np.zeros(0, dtype)
        return np.memmap(folder / name, dtype=dtype, mode="r")

    dtype = np.dtype(manifest.id_dtype)
    return EncodedCorpus(load("src.ids", dtype), load("src.offsets", np.int64),
                         load("tgt.ids", dtype), load("tgt.offsets", np.int64))
