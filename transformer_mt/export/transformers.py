"""Export a trained run to Hugging Face `transformers`, exactly: a folder that `AutoTokenizer` and
`AutoModelForSeq2SeqLM` load with `transformers` alone and that translates as our model does
(tests/export/test_transformers.py).

Which class computes what ours computes (each read in its modelling code):
- post-norm runs (the paper's) → `MarianMTModel`: LN(x + f(x)) sublayers, no final stack norms,
  embeddings scaled by √d, sinusoidal positions from 0 with the paper's frequencies, ReLU;
- pre-norm runs (our default) → `PegasusForConditionalGeneration`: x + f(LN(x)) sublayers and a final
  LayerNorm after each stack, otherwise the same (Pegasus's embeddings and table are Marian's). The
  other pre-norm seq2seq classes differ: mBART adds a norm after the embeddings and learns its
  positions, M2M-100/NLLB shift their positions past the padding id and use other frequencies.

Both classes recompute their sinusoidal table on load, with all sines first and then all cosines where
ours interleaves them; the table cannot be stored. So every weight is permuted along the residual
stream: their dimension i holds our dimension RESIDUAL_ORDER[i], in the embeddings, every LayerNorm,
the inputs of every projection that reads the residual stream and the outputs of every projection that
writes it. LayerNorm and attention heads do not see the order, so the model computes the same function.

One embedding table serves encoder, decoder and output in both classes (Marian with
share_encoder_decoder_embeddings). Where ours has one table (joint vocabulary, tied embeddings: the
default) the ids are ours. Otherwise (separate vocabularies, or untied embeddings) the exported
vocabulary is our source vocabulary followed by our target vocabulary: target id j becomes
source_size + j, `final_logits_bias` is -inf over the source part so that no source id is ever
generated, and the tokenizer decodes the target part (IdSpace, hf_tokenizer).
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..config import DecodeConfig, ModelConfig
from ..data.corpus import read_held_out
from ..data.tokenizer import BOS, EOS, PAD, SPECIALS, UNK, TokenizerPair
from ..errors import UserError
from ..model.checkpoint import Trained
from ..model.transformer import sinusoidal_positions
from ..run_folder import RunPaths
from .common import check_output, staged
from .model_card import Evaluation, evaluate_test_split, model_card

# Target tokens in a two-part vocabulary carry this private-use character, which byte-level BPE never
# produces, so that their strings differ from the source tokens'; the tokenizer's decoder drops it.
TARGET_MARK = "\ue000"


def require_transformers():
    try:
        import transformers
    except ImportError:
        raise UserError("this needs transformers: pip install -e '.[hub]' (or pip install transformers "
                        "safetensors)") from None
    return transformers


@dataclass(frozen=True)
class IdSpace:
    """Where our ids sit in the exported model's one vocabulary."""
    src_size: int
    tgt_size: int
    shared: bool  # ours has one table for both sides: the ids are ours

    @classmethod
    def of(cls, cfg: ModelConfig, tokenizers: TokenizerPair) -> "IdSpace":
        return cls(tokenizers.src.vocab_size, tokenizers.tgt.vocab_size, tokenizers.joint and cfg.tie_embeddings)

    @property
    def size(self) -> int:
        return self.src_size if self.shared else self.src_size + self.tgt_size

    @property
    def tgt_offset(self) -> int:
        return 0 if self.shared else self.src_size

    def target(self, ours: int) -> int:
        """The exported id of our target id `ours`."""
        return ours + self.tgt_offset


def residual_order(d_model: int) -> Tensor:
    """Our sin(0), cos(0), sin(1), cos(1), ... dimensions as their sin(0), sin(1), ..., cos(0), cos(1), ..."""
    return torch.cat([torch.arange(0, d_model, 2), torch.arange(1, d_model, 2)])


def hf_state_dict(cfg: ModelConfig, weights: dict[str, Tensor], ids: IdSpace) -> dict[str, Tensor]:
    """Our state dict as theirs (the same names in Marian and Pegasus), permuted along the residual stream."""
    order = residual_order(cfg.d_model)
    w = {name: tensor.detach().to(torch.float32).cpu() for name, tensor in weights.items()}
    table = _table(w["src_embed.weight"], w["tgt_embed.weight"], ids)[:, order]
    # Tied, the output is the embedding table; untied, its source part is never used (masked by the bias).
    output = table if cfg.tie_embeddings else _table(torch.zeros_like(w["src_embed.weight"]), w["output.weight"],
                                                     ids)[:, order]
    out = {"model.shared.weight": table, "model.encoder.embed_tokens.weight": table,
           "model.decoder.embed_tokens.weight": table, "lm_head.weight": output,
           "final_logits_bias": _source_part_masked(ids)}
    for i in range(cfg.encoder_layers):
        theirs, ours = f"model.encoder.layers.{i}", f"encoder.{i}"
        out |= _self_attention(w, f"{theirs}.self_attn", f"{ours}.attn", order)
        out |= _norm(w, f"{theirs}.self_attn_layer_norm", f"{ours}.res_attn.norm", order)
        out |= _feed_forward(w, theirs, ours, order)
        out |= _norm(w, f"{theirs}.final_layer_norm", f"{ours}.res_ffn.norm", order)
    for i in range(cfg.decoder_layers):
        theirs, ours = f"model.decoder.layers.{i}", f"decoder.{i}"
        out |= _self_attention(w, f"{theirs}.self_attn", f"{ours}.self_attn", order)
        out |= _norm(w, f"{theirs}.self_attn_layer_norm", f"{ours}.res_self.norm", order)
        out |= _cross_attention(w, f"{theirs}.encoder_attn", f"{ours}.cross_attn", order)
        out |= _norm(w, f"{theirs}.encoder_attn_layer_norm", f"{ours}.res_cross.norm", order)
        out |= _feed_forward(w, theirs, ours, order)
        out |= _norm(w, f"{theirs}.final_layer_norm", f"{ours}.res_ffn.norm", order)
    if cfg.norm_first:
        out |= _norm(w, "model.encoder.layer_norm", "encoder_norm", order)
        out |= _norm(w, "model.decoder.layer_norm", "decoder_norm", order)
    return out


def _table(src: Tensor, tgt: Tensor, ids: IdSpace) -> Tensor:
    return src.clone() if ids.shared else torch.cat([src, tgt])


def _source_part_masked(ids: IdSpace) -> Tensor:
    bias = torch.zeros(1, ids.size)
    bias[:, : ids.tgt_offset] = float("-inf")
    return bias


def _reads(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor, rows: slice = slice(None)) -> dict[str, Tensor]:
    """A projection whose input is the residual stream: its columns permuted."""
    return {f"{theirs}.weight": w[f"{ours}.weight"][rows][:, order].clone(),
            f"{theirs}.bias": w[f"{ours}.bias"][rows].clone()}


def _writes(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor) -> dict[str, Tensor]:
    """A projection whose output is added to the residual stream: its rows (and bias) permuted."""
    return {f"{theirs}.weight": w[f"{ours}.weight"][order].clone(), f"{theirs}.bias": w[f"{ours}.bias"][order].clone()}


def _norm(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor) -> dict[str, Tensor]:
    return {f"{theirs}.weight": w[f"{ours}.weight"][order].clone(), f"{theirs}.bias": w[f"{ours}.bias"][order].clone()}


def _self_attention(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor) -> dict[str, Tensor]:
    """Our fused in_proj holds Q, K, V in that order."""
    d = w[f"{ours}.out_proj.weight"].size(0)
    out = _writes(w, f"{theirs}.out_proj", f"{ours}.out_proj", order)
    for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
        out |= _reads(w, f"{theirs}.{name}", f"{ours}.in_proj", order, slice(index * d, (index + 1) * d))
    return out


def _cross_attention(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor) -> dict[str, Tensor]:
    """Our q_proj reads the decoder's stream, our fused in_proj (K, V) the encoder's: both permuted."""
    d = w[f"{ours}.out_proj.weight"].size(0)
    out = _writes(w, f"{theirs}.out_proj", f"{ours}.out_proj", order) | _reads(w, f"{theirs}.q_proj", f"{ours}.q_proj",
                                                                               order)
    out |= _reads(w, f"{theirs}.k_proj", f"{ours}.in_proj", order, slice(0, d))
    out |= _reads(w, f"{theirs}.v_proj", f"{ours}.in_proj", order, slice(d, 2 * d))
    return out


def _feed_forward(w: dict[str, Tensor], theirs: str, ours: str, order: Tensor) -> dict[str, Tensor]:
    return _reads(w, f"{theirs}.fc1", f"{ours}.ffn.0", order) | _writes(w, f"{theirs}.fc2", f"{ours}.ffn.3", order)


def hf_config(cfg: ModelConfig, ids: IdSpace):
    """MarianConfig (post-norm) or PegasusConfig (pre-norm) for our model."""
    transformers = require_transformers()
    common = dict(vocab_size=ids.size, d_model=cfg.d_model, encoder_layers=cfg.encoder_layers,
                  decoder_layers=cfg.decoder_layers, encoder_attention_heads=cfg.n_heads,
                  decoder_attention_heads=cfg.n_heads, encoder_ffn_dim=cfg.d_ff, decoder_ffn_dim=cfg.d_ff,
                  activation_function="relu", dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                  activation_dropout=cfg.dropout, max_position_embeddings=cfg.max_positions, scale_embedding=True,
                  tie_word_embeddings=cfg.tie_embeddings, pad_token_id=PAD, eos_token_id=ids.target(EOS),
                  bos_token_id=ids.target(BOS), decoder_start_token_id=ids.target(BOS),
                  forced_eos_token_id=ids.target(EOS))
    if cfg.norm_first:
        return transformers.PegasusConfig(**common)
    return transformers.MarianConfig(decoder_vocab_size=ids.size, share_encoder_decoder_embeddings=True, **common)


def hf_model(cfg: ModelConfig, weights: dict[str, Tensor], ids: IdSpace):
    """The `transformers` model holding our weights; its own position tables checked against ours."""
    transformers = require_transformers()
    config = hf_config(cfg, ids)
    cls = transformers.PegasusForConditionalGeneration if cfg.norm_first else transformers.MarianMTModel
    model = cls(config).eval()
    missing, unexpected = model.load_state_dict(hf_state_dict(cfg, weights, ids), strict=False)
    left = [name for name in missing if not name.endswith("embed_positions.weight")]
    if left or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing {left}, unexpected {unexpected}")
    ours = sinusoidal_positions(cfg.max_positions, cfg.d_model)[:, residual_order(cfg.d_model)]
    for stack in (model.model.encoder, model.model.decoder):
        if not torch.allclose(stack.embed_positions.weight.float(), ours, atol=1e-4, rtol=0):
            raise UserError(f"transformers {transformers.__version__}'s {cls.__name__} computes other sinusoidal "
                            "positions than ours: the export would not be exact")
    return model


def hf_tokenizer(tokenizers: TokenizerPair, ids: IdSpace, max_positions: int):
    """A PreTrainedTokenizerFast that encodes sources as the encoder read them in training (ids, then
    EOS; cut to max_positions with EOS kept) and decodes generated ids as our target tokenizer does."""
    from tokenizers import AddedToken, Regex, decoders, processors

    transformers = require_transformers()
    backend = _source_with_target_tokens(tokenizers, ids)
    backend.post_processor = processors.TemplateProcessing(single=f"$A {SPECIALS[EOS]}",
                                                           special_tokens=[(SPECIALS[EOS], EOS)])
    steps = [] if ids.shared else [decoders.Replace(TARGET_MARK, "")]
    # Our decode() strips the space that byte-level BPE puts before the first word.
    backend.decoder = decoders.Sequence([*steps, decoders.ByteLevel(), decoders.Replace(Regex(r"^\s+|\s+$"), "")])
    if not ids.shared:
        backend.add_special_tokens([AddedToken(TARGET_MARK + token, special=True) for token in SPECIALS])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=SPECIALS[PAD], bos_token=SPECIALS[BOS], eos_token=SPECIALS[EOS],
        unk_token=SPECIALS[UNK], model_max_length=max_positions,
        # 4.x would add token_type_ids, which generate refuses, and reset the prefix space to its default.
        model_input_names=["input_ids", "attention_mask"], add_prefix_space=True,
        split_special_tokens=True,  # "<eos>" typed in a sentence is text, as in our tokenizer
        clean_up_tokenization_spaces=False)  # it would delete the space French puts before ! ? ; :


def _source_with_target_tokens(tokenizers: TokenizerPair, ids: IdSpace):
    """A copy of the source tokenizer; for a two-part vocabulary its BPE also holds the marked target
    tokens at their exported ids (no merge reaches them, so sources encode as before)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    backend = HFTokenizer.from_str(tokenizers.src.hf.to_str())
    if ids.shared:
        return backend
    model = json.loads(backend.to_str())["model"]
    vocab = dict(model["vocab"]) | {TARGET_MARK + token: ids.target(i) for i,
                                    token in enumerate(tokenizers.tgt.tokens())}
    merges = [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    backend.model = BPE(vocab=vocab, merges=merges, unk_token=model["unk_token"], fuse_unk=model["fuse_unk"],
                        byte_fallback=model["byte_fallback"], ignore_merges=model["ignore_merges"])
    return backend


def generation_config(decode: DecodeConfig, ids: IdSpace, max_positions: int, length_penalty: float):
    """The run's decode defaults as `generate` takes them. Its length limit is one per call, not
    a·source length + b per sentence: the model's positions (pass max_new_tokens to cut it), with EOS
    forced at the limit as ours forces it; its length penalty is length^length_penalty (power_exponent)."""
    transformers = require_transformers()
    return transformers.GenerationConfig(
        num_beams=decode.beam_size, length_penalty=length_penalty, early_stopping=True, do_sample=False,
        max_length=max_positions + 1, min_new_tokens=decode.min_len or None,
        decoder_start_token_id=ids.target(BOS), bos_token_id=ids.target(BOS), eos_token_id=ids.target(EOS),
        forced_eos_token_id=ids.target(EOS), pad_token_id=ids.target(PAD))


def power_exponent(decode: DecodeConfig, lengths: list[int]) -> float:
    """`generate` divides a hypothesis's summed log-probability by length^p, EOS counted, as our power
    penalty does with p = alpha. GNMT's ((5 + length) / 6)^alpha no p equals; the p with the same slope
    in log length at the median output length (EOS counted) of `lengths` ranks hypotheses of about that
    length as GNMT does (docs/deployment.md measures what remains). Without lengths, p = alpha."""
    if decode.length_penalty == "power" or not lengths:
        return decode.alpha
    median = statistics.median(lengths)
    return round(decode.alpha * median / (5.0 + median), 4)


def validation_target_lengths(trained: Trained) -> list[int]:
    """Tokens (EOS counted) of the run's validation references; none if the run folder has no such split."""
    references = [ref for _, ref in read_held_out(trained.run, "valid", trained.config.data)]
    return [len(ids) + 1 for ids in trained.tokenizers.tgt.encode_batch(references)]


@dataclass
class TransformersExport:
    checkpoint: str
    step: int
    model_class: str
    evaluation: Evaluation | None


def export_transformers(run: RunPaths, checkpoint: Path | None, output: Path, force: bool = False,
                        evaluate: bool = True) -> TransformersExport:
    """Write the folder: config.json, model.safetensors, generation_config.json, the tokenizer, README.md.
    With `evaluate`, the model card carries the checkpoint's BLEU and chrF on the run's test split."""
    require_transformers()
    check_output(output, force)
    trained = Trained.load(run, checkpoint)
    cfg = trained.config.model
    ids = IdSpace.of(cfg, trained.tokenizers)
    model = hf_model(cfg, trained.weights, ids)
    exponent = power_exponent(trained.config.decode, validation_target_lengths(trained))
    model.generation_config = generation_config(trained.config.decode, ids, cfg.max_positions, exponent)
    tokenizer = hf_tokenizer(trained.tokenizers, ids, cfg.max_positions)
    evaluation = evaluate_test_split(run, trained.path) if evaluate else None
    card = model_card(trained, type(model).__name__, ids.shared, evaluation, exponent)
    with staged(output) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _loadable_by_transformers_4(staging)
        card.save(staging / "README.md")
    return TransformersExport(str(trained.path), trained.step, type(model).__name__, evaluation)


def _loadable_by_transformers_4(folder: Path) -> None:
    """transformers 5 names its fast tokenizer class TokenizersBackend, which 4.x does not know; both
    know PreTrainedTokenizerFast (5 keeps it as that class's name)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
