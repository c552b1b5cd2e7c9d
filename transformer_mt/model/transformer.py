"""The encoder–decoder Transformer of "Attention Is All You Need", with an incremental decoder.

Shapes: B batch, S source length, T target length, D d_model, H heads, V vocabulary.
Masks are boolean with True = may attend. The decoder needs only the causal mask: targets are
right-padded, so a real position never sees a pad (pads come after it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..data.tokenizer import PAD, token_budget


def sinusoidal_positions(length: int, d_model: int) -> Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(pos / 10000^(2i/D))."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(length, d_model)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)
    return pe


def padding_mask(tokens: Tensor) -> Tensor:
    """(B, S) token ids → (B, 1, 1, S) mask, True at real tokens, broadcast over heads and queries."""
    return (tokens != PAD)[:, None, None, :]


@dataclass(frozen=True)
class Unpadded:
    """Where the real tokens of a right-padded (B, S) batch are. The encoder runs its position-wise
    layers (projections, feed-forward, norms) on these N rows only, and attention on the (B, S)
    layout: batches are bucketed by target length, so their sources carry padding that would
    otherwise go through every linear layer (docs/performance.md). Finding the rows on a GPU waits
    for it (nonzero), so training batches bring them from collation (Batch.src_index). Those may add
    pad positions, to round the row count (batching.Shapes): attention never looks at a pad key, so
    what those rows compute reaches neither the loss nor the gradients."""
    index: Tensor  # (N,) flat indices into B × S
    batch: int
    length: int

    @classmethod
    def of(cls, tokens: Tensor, index: Tensor | None = None) -> "Unpadded":
        """`index`, if given, is (tokens != PAD).flatten().nonzero(), found beforehand."""
        if index is None:
            index = (tokens != PAD).flatten().nonzero().squeeze(1)
        return cls(index, tokens.size(0), tokens.size(1))

    def pack(self, x: Tensor) -> Tensor:
        """(B, S, ...) → (N, ...)"""
        return x.flatten(0, 1).index_select(0, self.index)

    def unpack(self, x: Tensor) -> Tensor:
        """(N, ...) → (B, S, ...), zeros at the positions not among the rows."""
        full = x.new_zeros(self.batch * self.length, *x.shape[1:])
        return full.index_copy_(0, self.index, x).unflatten(0, (self.batch, self.length))


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout: float,
           need_weights: bool, incremental: bool = False) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over (B, H, T, d) heads; the weights only when asked for.
    `incremental`: the queries are those of one step of cached decoding.

    Where `spells_out_attention` says so, the maths is written out: one `baddbmm` scales the scores
    and adds the masks, then a softmax and a `bmm`. Elsewhere PyTorch's fused kernels."""
    if not (need_weights or spells_out_attention(q, incremental)):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal), None
    batch, heads, length, d = q.shape
    bias = _mask_bias(mask, causal, (batch, heads, length, k.size(2)), q)
    scores = torch.baddbmm(bias, q.reshape(batch * heads, length, d), k.reshape(batch * heads, -1, d).transpose(1, 2),
                           alpha=1.0 / math.sqrt(d))
    weights = scores.softmax(-1, dtype=torch.float32).to(q.dtype)
    out = torch.bmm(F.dropout(weights, dropout, training=dropout > 0), v.reshape(batch * heads, -1, d))
    return out.view(batch, heads, length, d), (weights.view(batch, heads, length, -1) if need_weights else None)


def spells_out_attention(q: Tensor, incremental: bool) -> bool:
    """On CPU, fp32 attention and every step of incremental decoding. PyTorch's CPU math kernel does
    the same work in more passes (it scales q and k apart, turns the boolean mask into a float one and
    re-checks each softmax row for all-masked keys), and in bf16 it upcasts K and V at every call,
    which a decoding step, with its one query per row, cannot amortise (docs/performance.md)."""
    return q.device.type == "cpu" and (incremental or q.dtype == torch.float32)


def _mask_bias(mask: Tensor | None, causal: bool, shape: tuple[int, int, int, int], like: Tensor) -> Tensor:
    """The masks as one additive bias, broadcastable to (B·H, T, S): -inf where a query may not look."""
    batch, heads, length, keys = shape
    bias = like.new_full((1, length, keys), float("-inf")).triu_(1) if causal else like.new_zeros(1, 1, 1)
    if mask is None:
        return bias
    pad = like.new_zeros(mask.shape).masked_fill_(~mask, float("-inf"))
    return bias + pad.expand(batch, heads, -1, keys).reshape(batch * heads, -1, keys)


@dataclass
class LayerCache:
    self_k: Tensor | None = None  # (B, H, t, d): grows one step at a time
    self_v: Tensor | None = None
    cross_k: Tensor | None = None  # (B, H, S, d): computed once from the encoder output
    cross_v: Tensor | None = None


@dataclass
class DecoderCache:
    layers: list[LayerCache] = field(default_factory=list)
    length: int = 0  # target positions already decoded

    def reorder(self, index: Tensor, sentences: Tensor | None = None) -> None:
        """Keep/reorder rows of the self-attention K/V (beam search reorders beams every step) and,
        given `sentences`, rows of the cross-attention K/V, which hold one copy per sentence."""
        for layer in self.layers:
            layer.self_k, layer.self_v = _select(layer.self_k, index), _select(layer.self_v, index)
            if sentences is not None:
                layer.cross_k, layer.cross_v = _select(layer.cross_k, sentences), _select(layer.cross_v, sentences)


def _select(value: Tensor | None, index: Tensor) -> Tensor | None:
    return None if value is None else value.index_select(0, index)


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, cross: bool):
        super().__init__()
        self.n_heads, self.dropout, self.cross = n_heads, dropout, cross
        # Fused projections: one matmul for Q,K,V (self) or for K,V over the memory (cross).
        self.q_proj = nn.Linear(d_model, d_model) if cross else None
        self.in_proj = nn.Linear(d_model, 2 * d_model if cross else 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, D) → (B, H, T, D/H)
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                causal: bool = False, cache: LayerCache | None = None, need_weights: bool = False,
                unpadded: Unpadded | None = None) -> tuple[Tensor, Tensor | None]:
        """With `unpadded`, x holds only those (N, D) rows, and so does the output."""
        if self.cross:
            if cache is not None and cache.cross_k is not None:
                k, v = cache.cross_k, cache.cross_v
            else:
                k, v = (self._heads(t) for t in self.in_proj(memory).chunk(2, dim=-1))
                if cache is not None:  # contiguous once, or every step's matmuls would copy them
                    k, v = k.contiguous(), v.contiguous()
                    cache.cross_k, cache.cross_v = k, v
            # Beam search keeps one memory per sentence: its g consecutive beam rows become g·T
            # queries against that one copy, so the memory is neither repeated nor reordered.
            rows, length = x.shape[:2]
            q = self._heads(self.q_proj(x).view(k.size(0), -1, x.size(-1)))
        else:
            qkv = self.in_proj(x)
            qkv = unpadded.unpack(qkv) if unpadded is not None else qkv
            q, k, v = (self._heads(t) for t in qkv.chunk(3, dim=-1))
            if cache is not None:
                if cache.self_k is not None:
                    k, v = torch.cat([cache.self_k, k], dim=2), torch.cat([cache.self_v, v], dim=2)
                cache.self_k, cache.self_v = k, v
                causal = causal and q.size(2) > 1
        dropout = self.dropout if self.training else 0.0
        out, weights = attend(q, k, v, mask, causal, dropout, need_weights, incremental=cache is not None)
        out = out.transpose(1, 2).flatten(2)
        if self.cross:
            out = out.view(rows, length, -1)
        elif unpadded is not None:
            out = unpadded.pack(out)
        return self.out_proj(out), weights


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, d_ff: int, dropout: float):
        super().__init__(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class Residual(nn.Module):
    """x + Dropout(f(LN(x))) in pre-norm; LN(x + Dropout(f(x))) in post-norm (the paper)."""

    def __init__(self, d_model: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm, self.dropout, self.norm_first = nn.LayerNorm(d_model), nn.Dropout(dropout), norm_first

    def forward(self, x: Tensor, sublayer) -> tuple[Tensor, Tensor | None]:
        out = sublayer(self.norm(x) if self.norm_first else x)
        out, weights = out if isinstance(out, tuple) else (out, None)
        x = x + self.dropout(out)
        return (x if self.norm_first else self.norm(x)), weights


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, cross=False)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.res_attn = Residual(cfg.d_model, cfg.dropout, cfg.norm_first)
        self.res_ffn = Residual(cfg.d_model, cfg.dropout, cfg.norm_first)

    def forward(self, x: Tensor, mask: Tensor, unpadded: Unpadded,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x: the (N, D) rows of the real source tokens."""
        x, weights = self.res_attn(
            x, lambda h: self.attn(h, mask=mask, need_weights=need_weights, unpadded=unpadded))
        x, _ = self.res_ffn(x, self.ffn)
        return x, weights


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, cross=False)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.attention_dropout, cross=True)
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout)
        self.res_self = Residual(cfg.d_model, cfg.dropout, cfg.norm_first)
        self.res_cross = Residual(cfg.d_model, cfg.dropout, cfg.norm_first)
        self.res_ffn = Residual(cfg.d_model, cfg.dropout, cfg.norm_first)

    def forward(self, x: Tensor, memory: Tensor, src_mask: Tensor, cache: LayerCache | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None, Tensor | None]:
        x, self_w = self.res_self(
            x, lambda h: self.self_attn(h, causal=True, cache=cache, need_weights=need_weights))
        x, cross_w = self.res_cross(
            x, lambda h: self.cross_attn(h, memory, mask=src_mask, cache=cache, need_weights=need_weights))
        x, _ = self.res_ffn(x, self.ffn)
        return x, self_w, cross_w


@dataclass
class AttentionMaps:
    encoder: list[Tensor]  # per layer (B, H, S, S)
    decoder_self: list[Tensor]  # per layer (B, H, T, T)
    cross: list[Tensor]  # per layer (B, H, T, S)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig, src_vocab: int, tgt_vocab: int, shared_vocab: bool):
        super().__init__()
        self.cfg = cfg
        self.scale = math.sqrt(cfg.d_model)
        self.src_embed = nn.Embedding(src_vocab, cfg.d_model, padding_idx=PAD)
        share_src = cfg.tie_embeddings and shared_vocab
        self.tgt_embed = self.src_embed if share_src else nn.Embedding(tgt_vocab, cfg.d_model, padding_idx=PAD)
        self.register_buffer("pe", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        # Pre-norm stacks need a final LayerNorm; post-norm layers already end in one.
        self.encoder_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(cfg.d_model) if cfg.norm_first else nn.Identity()
        self.output = nn.Linear(cfg.d_model, tgt_vocab, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.output.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.cfg.d_model ** -0.5)
                nn.init.zeros_(module.weight[PAD])

    def _embed(self, embedding: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        positions = self.pe[offset : offset + tokens.size(1)]
        return self.dropout(embedding(tokens) * self.scale + positions.to(embedding.weight.dtype))

    def encode(self, src: Tensor, need_weights: bool = False,
               src_index: Tensor | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(B, S) ids → memory (B, S, D; zeros at pads not among the rows), source mask (B, 1, 1, S), per-layer
        self-attention weights. `src_index`: where src's real tokens are (Unpadded.of)."""
        mask, unpadded = padding_mask(src), Unpadded.of(src, src_index)
        x, maps = unpadded.pack(self._embed(self.src_embed, src)), []
        for layer in self.encoder:
            x, weights = layer(x, mask, unpadded, need_weights)
            maps.append(weights)
        return unpadded.unpack(self.encoder_norm(x)), mask, maps

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache | None = None,
               need_weights: bool = False) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Decoder hidden states (B, T, D) for `tgt_in`, continuing after `cache.length` positions."""
        offset = cache.length if cache is not None else 0
        if cache is not None and not cache.layers:
            cache.layers = [LayerCache() for _ in self.decoder]
        x, self_maps, cross_maps = self._embed(self.tgt_embed, tgt_in, offset), [], []
        for index, layer in enumerate(self.decoder):
            layer_cache = cache.layers[index] if cache is not None else None
            x, self_w, cross_w = layer(x, memory, src_mask, layer_cache, need_weights)
            self_maps.append(self_w)
            cross_maps.append(cross_w)
        if cache is not None:
            cache.length += tgt_in.size(1)
        return self.decoder_norm(x), self_maps, cross_maps

    @property
    def max_output_len(self) -> int:
        """Tokens a search may generate before EOS: the EOS step's input must still have a position."""
        return token_budget(self.cfg.max_positions)

    def project(self, hidden: Tensor) -> Tensor:
        return self.output(hidden)

    def forward(self, src: Tensor, tgt_in: Tensor, src_index: Tensor | None = None) -> Tensor:
        """Teacher forcing: logits (B, T, V) for every target position at once."""
        memory, src_mask, _ = self.encode(src, src_index=src_index)
        hidden, _, _ = self.decode(tgt_in, memory, src_mask)
        return self.project(hidden)

    def decode_step(self, tokens: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache) -> Tensor:
        """Incremental decoding: the newest tokens (B, 1) → log-probabilities (B, V) of the next one.

        `memory` and `src_mask` may hold one row per sentence for B = sentences × beams rows."""
        hidden, _, _ = self.decode(tokens, memory, src_mask, cache)
        return F.log_softmax(self.project(hidden[:, -1]), dim=-1, dtype=torch.float32)

    def attention_maps(self, src: Tensor, tgt_in: Tensor) -> AttentionMaps:
        """Attention probabilities of one real forward pass (eval mode, no dropout)."""
        memory, src_mask, encoder_maps = self.encode(src, need_weights=True)
        _, self_maps, cross_maps = self.decode(tgt_in, memory, src_mask, need_weights=True)
        return AttentionMaps(encoder_maps, self_maps, cross_maps)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
