"""Export a trained run to CTranslate2, exactly: every weight mapped by name, our sinusoidal table and
special tokens, so that the model that comes out is the model that went in (tests/export/test_ctranslate2.py).

An export folder holds CTranslate2's model (model.bin, config.json, vocabularies), our tokenizer
files, and transformer_mt.json, written last: what decoding needs (the run's decode section,
max_positions) and where the model came from (checkpoint, step). The folder is built aside and
renamed into place (common.staged).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..data.tokenizer import BOS, EOS, SPECIALS, UNK
from ..decoding.ctranslate2_folder import (
    META,
    SRC_TOKENIZER,
    TGT_TOKENIZER,
    ExportMeta,
    require_ctranslate2,
)
from ..decoding.translator import alignment_layer
from ..errors import UserError
from ..model.checkpoint import Trained
from ..model.transformer import sinusoidal_positions
from ..run_folder import RunPaths
from .common import check_output, staged


def export_ctranslate2(run: RunPaths, checkpoint: Path | None, output: Path, quantization: str,
                       force: bool = False) -> ExportMeta:
    ct2 = require_ctranslate2()
    _check_runnable(ct2, quantization)
    check_output(output, force)
    trained = Trained.load(run, checkpoint)
    tokenizers = trained.tokenizers
    spec = transformer_spec(trained.config.model, trained.weights, tokenizers.src.tokens(),
                            tokenizers.tgt.tokens())
    meta = ExportMeta(asdict(trained.config.decode), trained.config.model.max_positions, tokenizers.joint,
                      str(trained.path), trained.step, quantization)
    with staged(output) as staging:
        save_spec(spec, staging, quantization)
        tokenizers.src.save(staging / SRC_TOKENIZER)
        tokenizers.tgt.save(staging / TGT_TOKENIZER)
        (staging / META).write_text(json.dumps(asdict(meta), indent=1))
    return meta


def save_spec(spec, folder: Path, quantization: str) -> None:
    """What CTranslate2's converters do with a spec: check it, quantize it, write it."""
    spec.validate()
    spec.optimize(quantization=quantization)
    folder.mkdir()
    spec.save(str(folder))


def _check_runnable(ct2, quantization: str) -> None:
    device = "cuda" if ct2.get_cuda_device_count() > 0 else "cpu"
    supported = ct2.get_supported_compute_types(device)
    if quantization not in supported:
        raise UserError(f"--quantization {quantization} cannot run on this machine's {device} (it runs "
                        f"{', '.join(sorted(supported))}): export where the model will run")


def transformer_spec(cfg: ModelConfig, weights: dict[str, torch.Tensor], src_tokens: list[str],
                     tgt_tokens: list[str]):
    """Our Transformer as a CTranslate2 TransformerSpec, weight by weight; the vocabularies are the token
    strings by id (Tokenizer.tokens())."""
    from ctranslate2.specs import common_spec
    from ctranslate2.specs import transformer_spec as ts

    spec = ts.TransformerSpec.from_config((cfg.encoder_layers, cfg.decoder_layers), cfg.n_heads,
                                          pre_norm=cfg.norm_first, activation=common_spec.Activation.RELU,
                                          alignment_layer=alignment_layer(cfg.decoder_layers),
                                          alignment_heads=cfg.n_heads)  # the server's inline-tag alignment
    get = _Weights(weights)
    positions = sinusoidal_positions(cfg.max_positions, cfg.d_model).numpy()  # ours, not CTranslate2's table
    encoder, decoder = spec.encoder, spec.decoder
    encoder.embeddings[0].weight = get("src_embed.weight")
    encoder.position_encodings.encodings = positions.copy()
    for i, layer in enumerate(encoder.layer):
        _attention(layer.self_attention, get, f"encoder.{i}.attn", f"encoder.{i}.res_attn.norm")
        _feed_forward(layer.ffn, get, f"encoder.{i}")
    decoder.embeddings.weight = get("tgt_embed.weight")
    decoder.position_encodings.encodings = positions.copy()
    for i, layer in enumerate(decoder.layer):
        _attention(layer.self_attention, get, f"decoder.{i}.self_attn", f"decoder.{i}.res_self.norm")
        _attention(layer.attention, get, f"decoder.{i}.cross_attn", f"decoder.{i}.res_cross.norm")
        _feed_forward(layer.ffn, get, f"decoder.{i}")
    if cfg.norm_first:  # post-norm layers end in their own norm; CTranslate2 then has no final one
        _norm(encoder.layer_norm, get, "encoder_norm")
        _norm(decoder.layer_norm, get, "decoder_norm")
    decoder.projection.weight = get("output.weight")
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = SPECIALS[UNK], SPECIALS[BOS], SPECIALS[EOS]
    spec.config.decoder_start_token = SPECIALS[BOS]
    spec.config.layer_norm_epsilon = 1e-5  # nn.LayerNorm's
    spec.register_source_vocabulary(src_tokens)
    spec.register_target_vocabulary(tgt_tokens)
    return spec


class _Weights:
    """float32 numpy copies of state-dict tensors (never views: converters may change arrays in place)."""

    def __init__(self, weights: dict[str, torch.Tensor]):
        self.weights = weights

    def __call__(self, name: str) -> np.ndarray:
        return self.weights[name].detach().to(torch.float32).cpu().numpy().copy()


def _linear(spec, get: _Weights, name: str) -> None:
    spec.weight = get(f"{name}.weight")
    spec.bias = get(f"{name}.bias")


def _norm(spec, get: _Weights, name: str) -> None:
    spec.gamma = get(f"{name}.weight")
    spec.beta = get(f"{name}.bias")


def _attention(spec, get: _Weights, name: str, norm: str) -> None:
    """Self-attention: linear[0] the fused Q,K,V (our in_proj, same order). Cross-attention: linear[0]
    the query, linear[1] the fused K,V (our q_proj, in_proj). The last linear is the output."""
    if len(spec.linear) == 3:
        _linear(spec.linear[0], get, f"{name}.q_proj")
        _linear(spec.linear[1], get, f"{name}.in_proj")
    else:
        _linear(spec.linear[0], get, f"{name}.in_proj")
    _linear(spec.linear[-1], get, f"{name}.out_proj")
    _norm(spec.layer_norm, get, norm)


def _feed_forward(spec, get: _Weights, layer: str) -> None:
    _linear(spec.linear_0, get, f"{layer}.ffn.0")
    _linear(spec.linear_1, get, f"{layer}.ffn.3")
    _norm(spec.layer_norm, get, f"{layer}.res_ffn.norm")
