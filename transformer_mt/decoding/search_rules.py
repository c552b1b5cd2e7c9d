"""What both decoders (search.py's PyTorch search and ctranslate2.py's CTranslate2 one) agree on: what a
hypothesis is, the length penalty that ranks finished ones, and how long an output may grow.

Plain Python, so that decoding with an export never loads PyTorch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Hypothesis:
    tokens: list[int]  # without BOS/EOS
    score: float  # length-normalised (beam) or summed (greedy) log-probability
    logprob: float  # summed log-probability, EOS included
    attention: list[list[float]] | None = None  # per token, the alignment layer's weights (where the search has them)


def length_penalty(length: int, kind: str, alpha: float) -> float:
    """GNMT's ((5 + len) / 6)^alpha, or len^alpha; the summed log-probability is divided by it."""
    return ((5.0 + length) / 6.0) ** alpha if kind == "gnmt" else float(length) ** alpha


def output_limit(source_tokens: int, a: float, b: int, limit: int) -> int:
    """At most a·source_tokens + b generated tokens (EOS excluded; source_tokens without the source's
    EOS), at least 1, within the model's limit. Rounded before the ceiling so that a decimal `a` counts
    as written: 50 × 1.1 is 55, not the 55.00000000000001 of its binary value."""
    return min(max(math.ceil(round(source_tokens * a + b, 6)), 1), limit)
