"""Length-bucketed batches capped by tokens, cut from an encoded corpus (in memory or memory-mapped)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from .mixing import Mixture
from .store import EncodedCorpus
from .tokenizer import BOS, EOS, PAD


@dataclass
class Batch:
    src: Tensor  # (B, S) source ids + EOS, right-padded
    tgt_in: Tensor  # (B, T) BOS + target ids (teacher forcing input)
    tgt_out: Tensor  # (B, T) target ids + EOS (what the decoder must predict)
    src_index: Tensor | None = None  # flat positions of src's real tokens (model.Unpadded), from collation

    @property
    def n_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())

    def tensors(self) -> list[Tensor | None]:
        return [self.src, self.tgt_in, self.tgt_out, self.src_index]

    def pinned(self) -> "Batch":
        """In page-locked memory, so that a copy to a GPU runs asynchronously."""
        return Batch(*(None if t is None else t.pin_memory() for t in self.tensors()))

    def to(self, device: torch.device) -> "Batch":
        """Asynchronous from pinned memory (pinned()); from pageable memory the copy waits."""
        return Batch(*(None if t is None else t.to(device, non_blocking=t.is_pinned()) for t in self.tensors()))


def pad_batch(sequences: list[list[int]], device: torch.device | str = "cpu") -> Tensor:
    """Token-id lists → one right-padded (B, longest) tensor (decoding input)."""
    return pad_sequence([torch.tensor(s, dtype=torch.long) for s in sequences], batch_first=True,
                        padding_value=PAD).to(device)


@dataclass(frozen=True)
class Shapes:
    """How training batches are rounded, so that the kernels see few distinct matrix shapes: batch
    lengths (both sides) padded up to a multiple of `length_multiple`, and the encoder's real-token
    rows (Batch.src_index) up to a multiple of `row_multiple` with pad positions, which attention and
    the loss ignore. Where kernels are built per shape (oneDNN's bf16 kernels on CPU) a new shape
    costs a kernel build; elsewhere rounding only adds padding (docs/performance.md)."""
    length_multiple: int = 1
    row_multiple: int = 1

    def length(self, length: int) -> int:
        return -(-length // self.length_multiple) * self.length_multiple

    def rows(self, src: np.ndarray) -> np.ndarray:
        """Flat positions of the encoder's rows in a (B, S) source batch: its real tokens, then as many
        pads as round their count up (all of them, if there are too few)."""
        flat = src.reshape(-1)
        real = np.flatnonzero(flat != PAD)
        wanted = min(flat.size, -(-real.size // self.row_multiple) * self.row_multiple)
        if wanted == real.size:
            return real
        return np.sort(np.concatenate([real, np.flatnonzero(flat == PAD)[: wanted - real.size]]))


def collate(corpus: EncodedCorpus, indices: np.ndarray | Tensor, shapes: Shapes = Shapes()) -> Batch:
    index = np.asarray(indices, dtype=np.int64)
    src = _padded(corpus.src_ids, corpus.src_offsets, index, before=None, after=EOS, shapes=shapes)
    tgt_in = _padded(corpus.tgt_ids, corpus.tgt_offsets, index, before=BOS, after=None, shapes=shapes)
    tgt_out = _padded(corpus.tgt_ids, corpus.tgt_offsets, index, before=None, after=EOS, shapes=shapes)
    return Batch(src, tgt_in, tgt_out, torch.from_numpy(shapes.rows(src.numpy())))


def _padded(ids: np.ndarray, offsets: np.ndarray, index: np.ndarray, before: int | None, after: int | None,
            shapes: Shapes) -> Tensor:
    """(B, longest + 1, rounded up by `shapes`) int64: each sequence with `before` or `after` added,
    right-padded, gathered in one go."""
    starts = offsets[index]
    lengths = offsets[index + 1] - starts
    columns = np.arange(int(lengths.max(initial=0)))
    real = columns < lengths[:, None]
    out = np.full((len(index), shapes.length(len(columns) + 1)), PAD, dtype=np.int64)
    body = out[:, 1 : len(columns) + 1] if before is not None else out[:, : len(columns)]
    body[real] = ids[(starts[:, None] + columns)[real]]
    if before is not None:
        out[:, 0] = before
    else:
        out[np.arange(len(index)), lengths] = after
    return torch.from_numpy(out)


@dataclass
class BatchPlan:
    """An epoch's batches as slices of one flat array of pair indices, so that the plan of any corpus
    stays small: batch i is order[bounds[b] : bounds[b + 1]] with b = sequence[i]."""
    order: np.ndarray  # (N,) pair indices, length-sorted within pools
    bounds: np.ndarray  # (batches + 1,) where each batch starts in `order`
    sequence: np.ndarray  # the batches in the order they are served

    def __len__(self) -> int:
        return len(self.sequence)

    def __getitem__(self, i: int) -> np.ndarray:
        b = self.sequence[i]
        return self.order[self.bounds[b] : self.bounds[b + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    def shard(self, rank: int, world_size: int) -> "BatchPlan":
        """Every world_size-th batch from `rank` on; all ranks get the same number."""
        usable = len(self) - len(self) % world_size
        return BatchPlan(self.order, self.bounds, self.sequence[rank:usable:world_size])


def token_batches(corpus: EncodedCorpus, batch_tokens: int, generator: torch.Generator | None,
                  pool_batches: int = 100, shapes: Shapes = Shapes(), pairs: np.ndarray | None = None) -> BatchPlan:
    """Batches of `pairs` (store indices, repeats allowed; default every pair once) whose padded size
    (sentences × longest side, rounded as `shapes` rounds it) stays within `batch_tokens`.

    With a generator: shuffle, sort by length inside pools of about `pool_batches` batches, and shuffle
    the batch order, so batches are dense but epochs differ. Without: one pass sorted by length.
    Lengths are read pool by pool, so the only corpus-sized array is the plan's order (int32).
    """
    n = len(corpus) if pairs is None else len(pairs)
    index_type = np.int32 if len(corpus) < 2**31 else np.int64
    if generator is None:
        order, pool = np.arange(n, dtype=index_type), max(1, n)
    else:
        order = torch.randperm(n, generator=generator, dtype=torch.int32 if n < 2**31 else torch.int64).numpy()
        pool = max(1, int(pool_batches * batch_tokens / max(1.0, corpus.mean_longest())))
    if pairs is not None:
        order = pairs.astype(index_type)[order]
    starts: list[int] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        src, tgt = corpus.lengths(chunk.astype(np.int64))
        by_length = np.lexsort((src, tgt))  # by target, then source length (stable): little padding on both sides
        order[start : start + len(chunk)] = chunk[by_length]
        widths = np.maximum(src, tgt)[by_length]
        if shapes.length_multiple > 1:  # the width a sentence makes its batch, less the EOS/BOS column
            widths = -(-(widths + 1) // shapes.length_multiple) * shapes.length_multiple - 1
        starts += [start + s for s in _cut(widths.tolist(), batch_tokens)]
    bounds = np.array(starts + [n], dtype=np.int64)
    count = len(starts)
    sequence = torch.randperm(count, generator=generator).numpy() if generator is not None else np.arange(count)
    return BatchPlan(order, bounds, sequence)


def _cut(lengths: list[int], batch_tokens: int) -> list[int]:
    """Where batches start: each grows while (its sentences) × (its longest) stays within the cap."""
    starts, start, widest = [0] if lengths else [], 0, 0
    for position, length in enumerate(lengths):
        widest_if_added = max(widest, length)
        if position > start and widest_if_added * (position - start + 1) > batch_tokens:
            starts.append(position)
            start, widest_if_added = position, length
        widest = widest_if_added
    return starts


def epoch_batches(corpus: EncodedCorpus, batch_tokens: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1, shapes: Shapes = Shapes(), mixture: Mixture | None = None) -> BatchPlan:
    """This rank's batches for one epoch: the same for any resume of the run, sharded by rank. With a
    `mixture`, the epoch's pairs are drawn from the store's corpora by weight (mixing.py)."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    pairs = None if mixture is None else mixture.epoch_pairs(seed, epoch)
    return token_batches(corpus, batch_tokens, generator, shapes=shapes, pairs=pairs).shard(rank, world_size)


def padding_share(batch: Batch) -> float:
    """Share of padded positions over both sides of a batch (a measure of batching waste)."""
    total = batch.src.numel() + batch.tgt_out.numel()
    pads = int((batch.src == PAD).sum() + (batch.tgt_out == PAD).sum())
    return pads / max(1, total)
