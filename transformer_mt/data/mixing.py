"""Which training pairs an epoch draws when the store holds several corpora with weights (data.corpora).

An epoch is as many pairs as the store holds; corpus i gets weight_i / (sum of weights) of them
(largest remainders, so the counts add up). Each corpus's pairs are served from an endless stream of
seeded permutations of the corpus (cycle c of corpus i: a permutation seeded by (seed, i, c)), and
epoch e takes that corpus's next share of the stream: an under-weighted corpus shows every pair once
before any twice, an over-weighted one repeats whole passes. Everything is a function of (seed,
epoch), so a resumed run draws exactly what it would have drawn, on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mixture:
    sizes: tuple[int, ...]  # training pairs of each corpus, in store order (corpus i follows corpus i - 1)
    weights: tuple[float, ...]
    names: tuple[str, ...] = ()  # for people

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.weights) or not self.sizes:
            raise ValueError("a mixture needs one weight per corpus")
        if min(self.sizes) < 1 or not min(self.weights) > 0:
            raise ValueError("every corpus of a mixture needs pairs and a weight above 0")

    def shares(self) -> np.ndarray:
        """Pairs each corpus contributes to an epoch (int64; they sum to the store's pairs)."""
        total = sum(self.sizes)
        exact = total * np.asarray(self.weights, np.float64) / sum(self.weights)
        counts = np.floor(exact).astype(np.int64)
        left = total - int(counts.sum())
        counts[np.argsort(-(exact - counts), kind="stable")[:left]] += 1
        return counts

    def summary(self) -> str:
        """What an epoch draws from each corpus, in words."""
        shares = self.shares()
        names = self.names or tuple(f"corpus {i + 1}" for i in range(len(self.sizes)))
        return f"each epoch draws {shares.sum():,} pairs: " + ", ".join(
            f"{name} {share / shares.sum():.0%} ({share / size:.2f} passes over its {size:,} pairs)"
            for name, share, size in zip(names, shares.tolist(), self.sizes))

    def epoch_pairs(self, seed: int, epoch: int) -> np.ndarray:
        """The store indices epoch `epoch` trains on, corpus after corpus (the batcher shuffles them)."""
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        parts = [start + _stream(size, share * epoch, share, (seed % (1 << 63), corpus))
                 for corpus, (start, size, share) in enumerate(zip(starts, self.sizes, self.shares().tolist()))]
        return np.concatenate(parts).astype(np.int64)


def _stream(size: int, begin: int, count: int, key: tuple[int, int]) -> np.ndarray:
    """Positions begin .. begin + count of corpus `key`'s endless stream of permutations of range(size)."""
    first, last = begin // size, (begin + count - 1) // size if count else begin // size - 1
    cycles = [np.random.default_rng((*key, cycle)).permutation(size) for cycle in range(first, last + 1)]
    if not cycles:
        return np.zeros(0, np.int64)
    stream = np.concatenate(cycles)
    offset = begin - first * size
    return stream[offset : offset + count]
