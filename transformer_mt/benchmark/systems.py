"""The systems a benchmark compares, and the training and decoding jobs it times for each."""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..config import DecodeConfig, ModelConfig
from ..data.batching import Batch
from ..data.tokenizer import BOS, EOS, PAD
from ..decoding.search import beam_search, greedy
from ..errors import UserError
from ..model.device import DTYPES, attention_kernels, autocast
from ..model.transformer import DecoderCache, LayerCache, Transformer
from ..training.objective import adam, smoothed_loss
from .records import OURS, PEER, UNCACHED
from .timing import Job, sync

DECODE_LENGTH = 24  # generated tokens per sentence, forced for every system (random weights never stop)


@dataclass
class System:
    """One implementation under test: how to build it, run teacher forcing, and decode."""
    name: str
    build: Callable[[], torch.nn.Module]
    logits: Callable[[torch.nn.Module, Batch], Tensor]
    decode: Callable[[torch.nn.Module, Tensor, int], object]
    kernels: Callable[[], contextlib.AbstractContextManager]


class FullPrefixDecoder:
    """Our model with the decoder re-run over the whole prefix at every step, without the key/value
    cache: what incremental decoding saves. The search sees the same interface; the prefix rides in
    the search's cache (as a one-wide "key" per row), so that beam reordering moves it along."""

    def __init__(self, model: Transformer):
        self.model = model

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        return self.model.encode(src)

    def decode_step(self, tokens: Tensor, memory: Tensor, src_mask: Tensor, cache: DecoderCache) -> Tensor:
        if not cache.layers:
            cache.layers = [LayerCache()]
        prefix = cache.layers[0]
        new = tokens.view(-1, 1, tokens.size(1), 1)
        prefix.self_k = new if prefix.self_k is None else torch.cat([prefix.self_k, new], dim=2)
        return self.model.decode_step(prefix.self_k.view(tokens.size(0), -1), memory, src_mask, DecoderCache())


def ours(cfg: ModelConfig, vocab: int, device: torch.device, use_cache: bool = True) -> System:
    """Our Transformer and search; `use_cache=False`: through FullPrefixDecoder."""
    def decode(model, src, beam):
        search = DecodeConfig(beam_size=beam, max_len_a=0.0, max_len_b=DECODE_LENGTH, min_len=DECODE_LENGTH)
        searched = model if use_cache else FullPrefixDecoder(model)
        return (greedy if beam == 1 else beam_search)(searched, src, search, model.max_output_len)

    return System(OURS if use_cache else UNCACHED, lambda: Transformer(cfg, vocab, vocab, shared_vocab=True).to(device),
                  lambda model, b: model(b.src, b.tgt_in), decode, lambda: attention_kernels(device))


def peer(cfg: ModelConfig, vocab: int, device: torch.device) -> System:
    """transformers.MarianMTModel with our dimensions: random init, SDPA, ReLU, tied embeddings."""
    try:
        from transformers import MarianConfig, MarianMTModel
    except ImportError:
        raise UserError("the peer benchmark needs transformers: pip install -e '.[bench]' (or use --no-peer)") from None
    marian = MarianConfig(
        vocab_size=vocab, decoder_vocab_size=vocab, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
        decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.n_heads, decoder_attention_heads=cfg.n_heads,
        encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff, activation_function="relu", dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=cfg.max_positions,
        scale_embedding=True, pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=BOS,
        forced_eos_token_id=None, share_encoder_decoder_embeddings=True, tie_word_embeddings=True)

    def decode(model, src, beam):
        return model.generate(input_ids=src, attention_mask=src != PAD, num_beams=beam, do_sample=False,
                              min_new_tokens=DECODE_LENGTH, max_new_tokens=DECODE_LENGTH + 1)

    def logits(model, b):
        return model(input_ids=b.src, attention_mask=b.src != PAD, decoder_input_ids=b.tgt_in).logits

    return System(PEER, lambda: MarianMTModel._from_config(marian, attn_implementation="sdpa").to(device),
                  logits, decode, contextlib.nullcontext)  # the peer runs PyTorch's default SDPA dispatch


def training_job(system: System, batches: list[Batch], precision: str, device: torch.device) -> Job:
    """Training steps with the trainer's optimiser and loss, for every system."""
    torch.manual_seed(0)
    model = system.build()
    optimizer = adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)

    def step(batch: Batch) -> None:
        with system.kernels():
            with autocast(device, precision):
                logits = system.logits(model, batch)
            loss, _ = smoothed_loss(logits, batch.tgt_out, 0.1)
            (loss / batch.n_tokens).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync(device)

    return Job([functools.partial(step, batch) for batch in batches])


def decoding_job(system: System, batches: list[Tensor], beam: int, precision: str, device: torch.device) -> Job:
    """Inference in bf16 casts the weights once, as translate.py does (and HF's torch_dtype)."""
    torch.manual_seed(0)
    model = system.build().eval().to(DTYPES[precision])

    def step(src: Tensor) -> None:
        with torch.no_grad(), system.kernels():
            system.decode(model, src, beam)
        sync(device)

    return Job([functools.partial(step, src) for src in batches])
