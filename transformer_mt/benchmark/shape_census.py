"""How many distinct matrix shapes a training epoch gives the kernels, and what rounding them costs in
padding, counted from the batch plan alone (any machine gives the same counts; `make bench-shapes`,
docs/performance.md). Kernels built per shape (oneDNN's bf16 kernels on CPU, compiled graphs
anywhere) pay for every new shape; an epoch of length-bucketed batches brings hundreds."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig
from ..data.batching import Shapes, epoch_batches
from ..data.store import EncodedCorpus


@dataclass(frozen=True)
class BatchShape:
    sentences: int  # B
    src_len: int  # S, rounded
    tgt_len: int  # T, rounded
    encoder_rows: int  # N: the rows the encoder's position-wise layers run on
    real_target_tokens: int
    real_source_tokens: int


def batch_shapes(corpus: EncodedCorpus, batch_tokens: int, seed: int, shapes: Shapes) -> list[BatchShape]:
    """Every batch of epoch 0 as the trainer would collate it, without building the tensors."""
    out = []
    for indices in epoch_batches(corpus, batch_tokens, seed, 0, shapes=shapes):
        src, tgt = (side.astype(np.int64) + 1 for side in corpus.lengths(indices.astype(np.int64)))
        b, s, t = len(indices), shapes.length(int(src.max())), shapes.length(int(tgt.max()))
        rows = min(b * s, -(-int(src.sum()) // shapes.row_multiple) * shapes.row_multiple)
        out.append(BatchShape(b, s, t, rows, int(tgt.sum()), int(src.sum())))
    return out


def linear_products(batch: BatchShape, cfg: ModelConfig, vocab: int) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every linear layer's forward matrix product in one training step of `batch`
    (each shape's two backward products follow from it)."""
    d, ff = cfg.d_model, cfg.d_ff
    bt, bs, n = batch.sentences * batch.tgt_len, batch.sentences * batch.src_len, batch.encoder_rows
    encoder = [(n, d, 3 * d), (n, d, d), (n, d, ff), (n, ff, d)] * cfg.encoder_layers
    decoder = [(bt, d, 3 * d), (bt, d, d), (bt, d, d), (bs, d, 2 * d), (bt, d, d), (bt, d, ff), (bt, ff, d)]
    return encoder + decoder * cfg.decoder_layers + [(bt, d, vocab)]


@dataclass
class Census:
    batches: int
    batch_shapes: int  # distinct (B, S, T): the attention products' shapes
    encoder_rows: int  # distinct N
    decoder_rows: int  # distinct B·T
    linear_shapes: int  # distinct (rows, in, out) over all linear layers
    real_target_share: float  # real target tokens / target positions computed
    encoder_row_overhead: float  # encoder rows computed / real source tokens, less 1
    linear_mflops_per_target_token: float  # the linear layers', forward and backward
    gemm_shapes: int  # distinct GEMMs (m, k, n) of the linear layers, forward and both backward products
    gemm_builds: int  # how often a cache of ONEDNN_DEFAULT_CACHE GEMM kernels, least recently used
    #                   out first, would have to build one over the epoch (oneDNN's primitive cache)


ONEDNN_DEFAULT_CACHE = 1024  # oneDNN's default primitive cache capacity (ONEDNN_PRIMITIVE_CACHE_CAPACITY)


def gemm_products(linear: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(m, k, n) of each linear layer's forward product and of its two backward ones, in order."""
    return [gemm for rows, fan_in, fan_out in linear
            for gemm in ((rows, fan_in, fan_out), (rows, fan_out, fan_in), (fan_out, rows, fan_in))]


def cache_builds(sequence: list, capacity: int) -> int:
    """Misses of a least-recently-used cache of `capacity` entries over `sequence`."""
    cache: OrderedDict = OrderedDict()
    builds = 0
    for key in sequence:
        if key in cache:
            cache.move_to_end(key)
            continue
        builds += 1
        cache[key] = None
        if len(cache) > capacity:
            cache.popitem(last=False)
    return builds


def census(corpus: EncodedCorpus, batch_tokens: int, seed: int, shapes: Shapes, cfg: ModelConfig,
           vocab: int) -> Census:
    """Distinct shapes, padding and linear-layer FLOPs per real target token of one rounding's epoch."""
    plan = batch_shapes(corpus, batch_tokens, seed, shapes)
    linear: set[tuple[int, int, int]] = set()
    gemms: list[tuple[int, int, int]] = []
    flops = 0.0
    for batch in plan:
        products = linear_products(batch, cfg, vocab)
        flops += sum(6.0 * rows * fan_in * fan_out for rows, fan_in, fan_out in products)  # forward and backward
        linear |= set(products)
        gemms += gemm_products(products)
    targets = sum(b.real_target_tokens for b in plan)
    return Census(
        batches=len(plan), batch_shapes=len({(b.sentences, b.src_len, b.tgt_len) for b in plan}),
        encoder_rows=len({b.encoder_rows for b in plan}), decoder_rows=len({b.sentences * b.tgt_len for b in plan}),
        linear_shapes=len(linear),
        real_target_share=targets / max(1, sum(b.sentences * b.tgt_len for b in plan)),
        encoder_row_overhead=sum(b.encoder_rows for b in plan) / max(1, sum(b.real_source_tokens for b in plan)) - 1,
        linear_mflops_per_target_token=flops / max(1, targets) / 1e6,
        gemm_shapes=len(set(gemms)), gemm_builds=cache_builds(gemms, ONEDNN_DEFAULT_CACHE))
