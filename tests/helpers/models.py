"""Tiny models and batches, and the spelled-out attention the fused kernels are checked against."""
import math

import numpy as np
import torch

from transformer_mt.config import ModelConfig
from transformer_mt.data.store import EncodedCorpus
from transformer_mt.model.transformer import Transformer

VOCAB = 50


def tiny(norm_first=True, tie=True, shared=True, dropout=0.0) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, encoder_layers=2, decoder_layers=2, d_ff=64, dropout=dropout,
                      norm_first=norm_first, tie_embeddings=tie, max_positions=64)
    return Transformer(cfg, VOCAB, VOCAB + (0 if shared else 7), shared_vocab=shared).eval()


def tokens(*shape):
    return torch.randint(4, VOCAB, shape)


def naive_attention(q, k, v, keep=None, causal=False):
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.size(-1))
    if causal:
        scores = scores + torch.full(scores.shape[-2:], float("-inf"), device=scores.device).triu(1)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.einsum("bhqk,bhkd->bhqd", torch.softmax(scores, -1), v)


def ragged_corpus(pairs: int = 12, seed: int = 0):
    """Pairs of random lengths (3 to 13 tokens a side) over tiny()'s vocabulary."""
    rng = np.random.default_rng(seed)
    sides = []
    for _ in range(2):
        offsets = np.concatenate([[0], np.cumsum(rng.integers(3, 14, pairs))]).astype(np.int64)
        sides += [rng.integers(4, 40, int(offsets[-1])).astype(np.uint16), offsets]
    return EncodedCorpus(*sides)
