"""Which split a pair belongs to, decided by a seeded hash of its normalised source sentence.

Every translation of a source lands in the same split, and nothing sorts or holds the corpus: the
held-out splits are the sources with the smallest hashes (the first data.valid_size distinct ones
validation, the next data.test_size test), training gets all the others, and data.max_pairs keeps
the training pairs that come first in hash order (whole sources, a random subset). The same seed and
corpus give the same split on any machine.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


def source_hashes(sources: Sequence[str], seed: int) -> np.ndarray:
    """A 64-bit keyed BLAKE2b hash of each sentence (uint64)."""
    key = (seed % (1 << 64)).to_bytes(8, "little")
    digests = (hashlib.blake2b(s.encode("utf-8"), digest_size=8, key=key).digest() for s in sources)
    return np.fromiter((int.from_bytes(d, "little") for d in digests), dtype=np.uint64, count=len(sources))


class SmallestDistinct:
    """The k smallest distinct values of a stream of uint64 chunks, and whether there were more."""

    def __init__(self, k: int):
        self.k, self.values, self.more = k, np.zeros(0, np.uint64), False

    @property
    def limit(self) -> int | None:
        """Values above this can no longer be among the k smallest (None: anything still can)."""
        return int(self.values[-1]) if len(self.values) == self.k else None

    def add(self, chunk: np.ndarray) -> None:
        if self.limit is not None:
            above = chunk > self.values[-1]
            self.more |= bool(above.any())
            chunk = chunk[~above]
        merged = np.union1d(self.values, chunk)
        self.more |= len(merged) > self.k
        self.values = merged[: self.k]


@dataclass(frozen=True)
class Cuts:
    """Sources hashing at most `valid_max` are validation, at most `test_max` test, the rest training."""
    valid_max: int
    test_max: int

    @classmethod
    def of(cls, smallest: SmallestDistinct, valid_size: int) -> "Cuts":
        return cls(int(smallest.values[valid_size - 1]), int(smallest.values[-1]))

    def split_of(self, hashes: np.ndarray) -> np.ndarray:
        """TRAIN, VALID or TEST for each hash (uint8)."""
        return np.where(hashes <= np.uint64(self.valid_max), VALID,
                        np.where(hashes <= np.uint64(self.test_max), TEST, TRAIN)).astype(np.uint8)


@dataclass(frozen=True)
class Subset:
    """The first `max_pairs` training pairs in (hash, position) order: those hashing below `below`,
    and the first `ties` (in corpus order) of those hashing exactly `below`."""
    below: int
    ties: int

    @classmethod
    def find(cls, hashes: np.ndarray, above: int, k: int, chunk: int = 1 << 22) -> "Subset | None":
        """Over a (memory-mapped) hash array: None when at most k hashes exceed `above` (keep them all).
        A radix select, two passes in chunks: count by the top 16 bits, then sort the one bucket the
        k-th value falls in."""
        above_ = np.uint64(above)
        counts = np.zeros(1 << 16, np.int64)
        for start in range(0, len(hashes), chunk):
            part = hashes[start : start + chunk]
            counts += np.bincount((part[part > above_] >> np.uint64(48)).astype(np.int64), minlength=1 << 16)
        if counts.sum() <= k:
            return None
        bucket = int(np.searchsorted(np.cumsum(counts), k))  # the bucket holding the k-th value
        before = int(counts[:bucket].sum())
        values = np.concatenate([part[(part > above_) & (part >> np.uint64(48) == np.uint64(bucket))]
                                 for part in (hashes[s : s + chunk] for s in range(0, len(hashes), chunk))])
        values.sort()
        kth = values[k - before - 1]
        return cls(int(kth), k - before - int(np.searchsorted(values, kth)))


@dataclass(frozen=True)
class Selection:
    """Which pairs of the cleaned corpus are training pairs (after data.max_pairs). With several
    corpora, `held_out` holds the source hashes of every corpus's held-out pairs (sorted), which no
    corpus trains on: a sentence in one corpus's test split and another's training data would leak."""
    cuts: Cuts
    subset: Subset | None
    held_out: np.ndarray | None = None

    def masks(self) -> Callable[[np.ndarray], np.ndarray]:
        """A fresh pass over the corpus: call it on each chunk's hashes, in corpus order, for the
        boolean mask of the chunk's training pairs."""
        ties_left = self.subset.ties if self.subset else 0

        def mask(hashes: np.ndarray) -> np.ndarray:
            nonlocal ties_left
            train = hashes > np.uint64(self.cuts.test_max)
            if self.held_out is not None:
                train &= ~np.isin(hashes, self.held_out, assume_unique=False)
            if self.subset is None:
                return train
            below = np.uint64(self.subset.below)
            keep = train & (hashes < below)
            tied = np.flatnonzero(train & (hashes == below))[:ties_left]
            keep[tied] = True
            ties_left -= len(tied)
            return keep

        return mask


def count_selected(hashes: np.ndarray, selection: Selection, chunk: int = 1 << 22) -> int:
    """How many pairs of a (memory-mapped) hash array `selection` trains on."""
    mask = selection.masks()
    return sum(int(mask(np.asarray(hashes[start : start + chunk])).sum()) for start in range(0, len(hashes), chunk))


def hash_file(path: Path) -> np.ndarray:
    """A file of uint64 hashes, memory-mapped (an empty array for an empty file)."""
    if path.stat().st_size == 0:
        return np.zeros(0, np.uint64)
    return np.memmap(path, dtype=np.uint64, mode="r")
