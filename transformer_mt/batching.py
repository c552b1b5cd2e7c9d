"""Encode a split once (cached on disk), then cut it into length-bucketed batches capped by tokens."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .tokenizer import BOS, EOS, PAD, TokenizerPair


@dataclass
class EncodedCorpus:
    """Token ids of every pair, flat with offsets (compact, and loads fast with weights_only)."""
    src_ids: Tensor
    src_offsets: Tensor  # (N + 1,)
    tgt_ids: Tensor
    tgt_offsets: Tensor

    def __len__(self) -> int:
        return self.src_offsets.numel() - 1

    @property
    def src_lengths(self) -> Tensor:  # + EOS
        return self.src_offsets.diff() + 1

    @property
    def tgt_lengths(self) -> Tensor:  # + BOS (decoder input) or EOS (decoder output)
        return self.tgt_offsets.diff() + 1

    def src(self, i: int) -> Tensor:
        return self.src_ids[self.src_offsets[i] : self.src_offsets[i + 1]]

    def tgt(self, i: int) -> Tensor:
        return self.tgt_ids[self.tgt_offsets[i] : self.tgt_offsets[i + 1]]

    def to_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("src_ids", "src_offsets", "tgt_ids", "tgt_offsets")}


def _flatten(sequences: list[list[int]], max_len: int) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([min(len(s), max_len) for s in sequences], dtype=torch.int64)
    offsets = torch.zeros(len(sequences) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    flat = [t for s in sequences for t in s[:max_len]]
    return torch.tensor(flat, dtype=torch.int32), offsets


def encode_pairs(pairs: list[tuple[str, str]], tokenizers: TokenizerPair, max_len: int) -> EncodedCorpus:
    """Sequences longer than `max_len` - 1 tokens are cut so that EOS/BOS still fit the positions."""
    src_ids, src_off = _flatten(tokenizers.src.encode_batch([s for s, _ in pairs]), max_len - 1)
    tgt_ids, tgt_off = _flatten(tokenizers.tgt.encode_batch([t for _, t in pairs]), max_len - 1)
    return EncodedCorpus(src_ids, src_off, tgt_ids, tgt_off)


def encode_cached(pairs: list[tuple[str, str]], tokenizers: TokenizerPair, max_len: int,
                  cache: Path) -> EncodedCorpus:
    """Encode once; later runs (and resumes) reload the ids if text and tokenizers are unchanged."""
    digest = hashlib.sha256()
    digest.update(tokenizers.src.hf.to_str().encode())
    digest.update(tokenizers.tgt.hf.to_str().encode())
    digest.update(str(max_len).encode())
    for src, tgt in pairs:
        digest.update(f"{src}\t{tgt}\n".encode())
    key = digest.hexdigest()
    if cache.is_file():
        stored = torch.load(cache, weights_only=True)
        if stored.get("key") == key:
            return EncodedCorpus(**{k: v for k, v in stored.items() if k != "key"})
    corpus = encode_pairs(pairs, tokenizers, max_len)
    tmp = cache.with_suffix(".tmp")
    torch.save({"key": key, **corpus.to_dict()}, tmp)
    tmp.replace(cache)
    return corpus


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids + EOS, right-padded
    tgt_in: Tensor  # (B, T) BOS + target ids (teacher forcing input)
    tgt_out: Tensor  # (B, T) target ids + EOS (what the decoder must predict)

    @property
    def n_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def to(self, device: torch.device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.src, self.tgt_in, self.tgt_out)))


def pad_batch(sequences: list[list[int]], device: torch.device | str = "cpu") -> Tensor:
    """Token-id lists → one right-padded (B, longest) tensor (decoding input)."""
    return pad_sequence([torch.tensor(s, dtype=torch.long) for s in sequences], batch_first=True,
                        padding_value=PAD).to(device)


def collate(corpus: EncodedCorpus, indices: Tensor) -> Batch:
    eos, bos = torch.tensor([EOS], dtype=torch.int32), torch.tensor([BOS], dtype=torch.int32)
    src = [torch.cat([corpus.src(i), eos]) for i in indices.tolist()]
    tgt = [corpus.tgt(i) for i in indices.tolist()]
    pad = lambda seqs: pad_sequence(seqs, batch_first=True, padding_value=PAD).long()  # noqa: E731
    return Batch(pad(src), pad([torch.cat([bos, t]) for t in tgt]), pad([torch.cat([t, eos]) for t in tgt]))


def token_batches(src_lengths: Tensor, tgt_lengths: Tensor, batch_tokens: int, generator: torch.Generator | None,
                  pool_batches: int = 100) -> list[Tensor]:
    """Index batches whose padded size (sentences × longest side) stays within `batch_tokens`.

    With a generator: shuffle, sort by length inside pools of about `pool_batches` batches, and shuffle
    the batch order, so batches are dense but epochs differ. Without: one pass sorted by length.
    """
    n = src_lengths.numel()
    longest = torch.maximum(src_lengths, tgt_lengths)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    pool = n if generator is None else max(1, int(pool_batches * batch_tokens / max(1.0, longest.float().mean())))
    batches: list[Tensor] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        # Sort by target then source length (stable), so the padding on both sides stays small.
        chunk = chunk[torch.argsort(src_lengths[chunk], stable=True)]
        chunk = chunk[torch.argsort(tgt_lengths[chunk], stable=True)]
        batches += _cut(chunk, longest[chunk].tolist(), batch_tokens)
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _cut(indices: Tensor, lengths: list[int], batch_tokens: int) -> list[Tensor]:
    batches, start, widest = [], 0, 0
    for position, length in enumerate(lengths):
        widest_if_added = max(widest, length)
        if position > start and widest_if_added * (position - start + 1) > batch_tokens:
            batches.append(indices[start:position])
            start, widest_if_added = position, length
        widest = widest_if_added
    if start < len(lengths):
        batches.append(indices[start:])
    return batches


def epoch_batches(corpus: EncodedCorpus, batch_tokens: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[Tensor]:
    """This rank's batches for one epoch: the same for any resume of the run, sharded by rank."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    batches = token_batches(corpus.src_lengths, corpus.tgt_lengths, batch_tokens, generator)
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


def padding_share(batch: Batch) -> float:
    """Share of padded positions over both sides of a batch (a measure of batching waste)."""
    total = batch.src.numel() + batch.tgt_out.numel()
    pads = int((batch.src == PAD).sum() + (batch.tgt_out == PAD).sum())
    return pads / max(1, total)
