"""Matmul FLOP counts (the tests check them against PyTorch's FLOP counter on real runs)."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..data.batching import Batch
from ..data.tokenizer import PAD


def training_flops_per_token(cfg: ModelConfig, vocab: int, src_len: float, tgt_len: float) -> float:
    """Forward + backward (3× forward) matmul FLOPs per target token, attention and output layer included."""
    d, ff = cfg.d_model, cfg.d_ff
    ratio = src_len / tgt_len  # source tokens per target token
    encoder = cfg.encoder_layers * ratio * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * src_len * d)
    decoder = cfg.decoder_layers * (2 * 4 * d * d + 2 * 2 * d * ff + 2 * 2 * tgt_len * d  # self-attn, FFN
                                    + 2 * 2 * d * d + ratio * 2 * 2 * d * d + 2 * 2 * src_len * d)  # cross
    return 3 * (encoder + decoder + 2 * d * vocab)


def linear_flops_per_row(cfg: ModelConfig, vocab: int) -> tuple[int, int, int]:
    """Forward FLOPs of the linear layers per row: a source row through the encoder layers, a source row
    through the decoder's cross-attention K/V projections, a target row through the decoder layers and
    the output layer."""
    d, ff = cfg.d_model, cfg.d_ff
    return (cfg.encoder_layers * (8 * d * d + 4 * d * ff), cfg.decoder_layers * 4 * d * d,
            cfg.decoder_layers * (12 * d * d + 4 * d * ff) + 2 * d * vocab)


def decoding_flops(cfg: ModelConfig, vocab: int, batches: list[torch.Tensor], beam: int, generated: int,
                   attention: bool = True) -> float:
    """Matmul FLOPs of decoding `generated` tokens and EOS: encoder, cross K/V, then every beam row at every
    step (beams of a sentence are one row at the first step), output layer and, unless told not to,
    attention over the real (unpadded) positions."""
    d, total = cfg.d_model, 0.0
    encoder, cross_kv, decoder = linear_flops_per_row(cfg, vocab)
    for src in batches:
        n, lengths = src.size(0), (src != PAD).sum(1).float()
        total += float(lengths.sum()) * (encoder + cross_kv)
        total += attention * cfg.encoder_layers * 4 * d * float((lengths**2).sum())
        for step in range(generated + 1):
            rows = n if step == 0 else n * beam
            total += rows * decoder
            total += attention * cfg.decoder_layers * 4 * d * (rows * (step + 1) + rows // n * float(lengths.sum()))
    return total


def source_pad_gemm_share(cfg: ModelConfig, vocab: int, batches: list[Batch]) -> float:
    """The share of the linear layers' GEMM FLOPs (forward; backward is the same share) that fall on
    source padding in the encoder: the work our encoder skips and the peer does on identical batches.
    The cross-attention K/V projections of the memory run over the pads in both systems."""
    encoder, cross_kv, decoder = linear_flops_per_row(cfg, vocab)
    rows = sum(b.src.numel() for b in batches)
    pads = sum(int((b.src == PAD).sum()) for b in batches)
    return pads * encoder / (rows * (encoder + cross_kv) + sum(b.tgt_in.numel() for b in batches) * decoder)
