"""Exporting a run to Hugging Face transformers: the model that comes out is the model that went in,
loaded and run with transformers alone."""
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import transformers
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from tests.helpers.exports import check_force_and_failure
from tests.helpers.runs import tiny_run
from transformer_mt.config import DecodeConfig
from transformer_mt.data.tokenizer import BOS, EOS, PAD, source_ids
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.decoding.search import greedy
from transformer_mt.errors import UserError
from transformer_mt.export import transformers as hfx
from transformer_mt.export.transformers import IdSpace, export_transformers, power_exponent

SHAPES = {
    "pre-norm, joint, tied": dict(),
    "post-norm": dict(norm_first=False),
    "pre-norm, separate vocabularies": dict(joint=False),
    "post-norm, separate vocabularies": dict(norm_first=False, joint=False),
    "untied embeddings": dict(tie_embeddings=False),
}


@pytest.fixture(scope="module", params=list(SHAPES), ids=list(SHAPES))
def exported(request, tmp_path_factory, sample_pairs):
    root = tmp_path_factory.mktemp("hf")
    run = tiny_run(root, sample_pairs[:500], **SHAPES[request.param])
    export_transformers(run, None, root / "hf", evaluate=False)
    ours = Translator(run, device="cpu")
    return ours, root / "hf", IdSpace.of(ours.config.model, ours.tokenizers)


def teacher_forced(model, ours: Translator, ids: IdSpace, pairs,
                   batched: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(ours, theirs) log-probabilities over our target vocabulary at each real target position; theirs
    from one right-padded batch, or sentence by sentence."""
    sources = ours.encode([s for s, _ in pairs])
    targets = [[BOS] + ours.tokenizers.tgt.encode(t)[:30] for _, t in pairs]
    groups = [list(range(len(pairs)))] if batched else [[i] for i in range(len(pairs))]
    out = []
    for group in groups:
        src = _right_padded([sources[i] for i in group], PAD)
        tgt = _right_padded([[ids.target(t) for t in targets[i]] for i in group], ids.target(PAD))
        with torch.no_grad():
            logits = model(input_ids=src, attention_mask=src != PAD, decoder_input_ids=tgt).logits
        theirs = F.log_softmax(logits.float(), dim=-1)[..., ids.tgt_offset : ids.tgt_offset + ids.tgt_size]
        for row, i in enumerate(group):
            with torch.no_grad():
                mine = F.log_softmax(ours.model(torch.tensor([sources[i]]), torch.tensor([targets[i]])).float(),
                                     dim=-1)[0]
            out.append((mine, theirs[row, : len(targets[i])]))
    return out


def _right_padded(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(map(len, rows))
    return torch.tensor([row + [pad] * (width - len(row)) for row in rows])


def max_gap(model, ours, ids, pairs, batched=True) -> float:
    return max((mine - theirs).abs().max().item() for mine, theirs in teacher_forced(model, ours, ids, pairs, batched))


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("batched", [False, True], ids=["single", "padded batch"])
def test_teacher_forced_log_probabilities_equal_ours(exported, sample_pairs, attention, batched):
    ours, folder, ids = exported
    model = AutoModelForSeq2SeqLM.from_pretrained(folder, attn_implementation=attention).eval()
    assert max_gap(model, ours, ids, sample_pairs[600:612], batched) < 1e-4


def test_greedy_generate_gives_our_token_ids_and_text(exported, sample_pairs):
    """A random model stops at the length limit: ours forces EOS after max_len_b tokens, and so does
    generate at max_new_tokens with the folder's forced EOS."""
    ours, folder, ids = exported
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    sentences = [s for s, _ in sample_pairs[620:640]]
    limit = 12
    search = replace(ours.decode, beam_size=1, max_len_a=0.0, max_len_b=limit)
    src = _right_padded(ours.encode(sentences), PAD)
    want = [h.tokens for h in greedy(ours.model, src, search, ours.model.max_output_len)]
    with torch.no_grad():
        out = model.generate(**tok(sentences, return_tensors="pt", padding=True), num_beams=1, max_new_tokens=limit + 1)
    got = [_until_eos([t - ids.tgt_offset for t in row[1:].tolist()]) for row in out]
    assert got == [list(tokens) + [EOS] for tokens in want]  # ours end before EOS
    texts = tok.batch_decode(out, skip_special_tokens=True)
    assert texts == [ours.tokenizers.tgt.decode(tokens) for tokens in want]


@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) >= 5,
                    reason="transformers 5 has no translation pipeline; make test runs this file with 4.x too")
def test_the_translation_pipeline_of_transformers_4_gives_our_text(exported, sample_pairs):
    ours, folder, ids = exported
    sentences = [s for s, _ in sample_pairs[620:630]]
    search = replace(ours.decode, beam_size=1, max_len_a=0.0, max_len_b=12)
    want = greedy(ours.model, _right_padded(ours.encode(sentences), PAD), search, ours.model.max_output_len)
    translate = transformers.pipeline("translation", model=str(folder), device="cpu")
    got = [row["translation_text"] for row in translate(sentences, num_beams=1, max_new_tokens=13)]
    assert got == [ours.tokenizers.tgt.decode(h.tokens) for h in want]


def _until_eos(tokens: list[int]) -> list[int]:
    return tokens[: tokens.index(EOS) + 1] if EOS in tokens else tokens


def test_the_tokenizer_encodes_and_decodes_as_ours(exported, sample_pairs):
    ours, folder, ids = exported
    tok = AutoTokenizer.from_pretrained(folder)
    sentences = [s for s, _ in sample_pairs[:200]] + ["Type <eos> or <pad> as text.", "x " * 100]
    assert tok(sentences, truncation=True).input_ids == ours.encode(sentences)
    assert ours.encode(sentences)[-1] == source_ids(ours.tokenizers.src.encode(sentences[-1]), 48)  # cut, EOS kept
    french = [t for _, t in sample_pairs[:200]] + ["Vraiment ? Oui ! Bon : d'accord ; « non »."]
    generated = [[BOS] + ours.tokenizers.tgt.encode(t) + [EOS, PAD, PAD] for t in french]
    decoded = tok.batch_decode([[ids.target(i) for i in row] for row in generated], skip_special_tokens=True)
    assert decoded == [ours.tokenizers.tgt.decode(row) for row in generated]
    assert decoded[-1] == "Vraiment ? Oui ! Bon : d'accord ; « non »."


def test_a_save_and_load_round_trip_keeps_model_and_tokenizer(exported, sample_pairs, tmp_path):
    ours, folder, ids = exported
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    tok.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    tok2, model2 = AutoTokenizer.from_pretrained(tmp_path), AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    sentences = [s for s, _ in sample_pairs[700:710]]
    assert tok2(sentences).input_ids == tok(sentences).input_ids
    assert max_gap(model2, ours, ids, sample_pairs[600:606]) < 1e-4
    batch = tok(sentences, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        assert torch.equal(model.generate(**batch, max_new_tokens=8), model2.generate(**batch, max_new_tokens=8))


def _state_dict_with(monkeypatch, ours, ids, mutate=None, order=None):
    if order is not None:
        monkeypatch.setattr(hfx, "residual_order", order)
    state = hfx.hf_state_dict(ours.config.model, ours.model.state_dict(), ids)
    if mutate:
        mutate(state)
    return state


def _swap(state, a, b):
    for suffix in ("weight", "bias"):
        state[f"{a}.{suffix}"], state[f"{b}.{suffix}"] = state[f"{b}.{suffix}"], state[f"{a}.{suffix}"]


@pytest.mark.parametrize("mutation", ["no permutation", "misplaced norm"])
def test_a_wrong_mapping_fails_the_comparison(exported, sample_pairs, monkeypatch, mutation):
    ours, folder, ids = exported
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    if mutation == "no permutation":
        state = _state_dict_with(monkeypatch, ours, ids, order=lambda d: torch.arange(d))
    else:
        state = _state_dict_with(monkeypatch, ours, ids, mutate=lambda s: _swap(
            s, "model.encoder.layers.0.self_attn_layer_norm", "model.encoder.layers.0.final_layer_norm"))
    model.load_state_dict(state, strict=False)
    assert max_gap(model, ours, ids, sample_pairs[600:606]) > 1e-2


def test_a_wrong_start_token_fails_greedy(exported, sample_pairs):
    ours, folder, ids = exported
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    batch = tok([s for s, _ in sample_pairs[620:640]], return_tensors="pt", padding=True)
    with torch.no_grad():
        right = model.generate(**batch, num_beams=1, max_new_tokens=8)
        wrong = model.generate(**batch, num_beams=1, max_new_tokens=8, decoder_start_token_id=ids.target(EOS))
    assert not torch.equal(right[:, 1:], wrong[:, 1:])


def test_an_export_whose_class_has_other_positions_is_refused(tmp_path, sample_pairs, monkeypatch):
    run = tiny_run(tmp_path, sample_pairs[:500])
    real = hfx.sinusoidal_positions
    monkeypatch.setattr(hfx, "sinusoidal_positions", lambda length, d: real(length + 1, d)[1:])  # from position 1
    with pytest.raises(UserError, match="computes other sinusoidal positions than ours"):
        export_transformers(run, None, tmp_path / "hf", evaluate=False)
    assert not (tmp_path / "hf").exists()


def _with_splits(run, pairs):
    run.data.mkdir(exist_ok=True)
    for split, chunk in (("valid", pairs[:10]), ("test", pairs[10:20])):
        (run.data / f"{split}.en").write_text("".join(s + "\n" for s, _ in chunk))
        (run.data / f"{split}.fr").write_text("".join(t + "\n" for _, t in chunk))


def test_the_folder_holds_model_tokenizer_generation_settings_and_a_model_card(tmp_path, sample_pairs):
    run = tiny_run(tmp_path, sample_pairs[:500], norm_first=False)
    _with_splits(run, sample_pairs[800:820])
    done = export_transformers(run, None, tmp_path / "hf")
    folder = tmp_path / "hf"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "README.md"} <= names and not any(name.endswith(".bin") for name in names)
    assert done.model_class == "MarianMTModel" and done.step == 7
    model = AutoModelForSeq2SeqLM.from_pretrained(folder)
    gen = model.generation_config
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (BOS, EOS, PAD)
    assert gen.num_beams == 4 and gen.early_stopping is True and gen.max_length == 49
    assert gen.length_penalty == power_exponent(DecodeConfig(),
                                                hfx.validation_target_lengths(hfx.Trained.load(run, None)))
    assert type(AutoTokenizer.from_pretrained(folder)).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert '"tokenizer_class": "PreTrainedTokenizerFast"' in (folder / "tokenizer_config.json").read_text()
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "other" and card.data.datasets == ["Helsinki-NLP/opus_books"]  # the config's default
    assert card.data.language == ["en", "fr"] and "see its dataset card" in card.text
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} == {
        ("bleu", done.evaluation.bleu), ("chrf", done.evaluation.chrf)}
    assert done.evaluation.sentences == 10 and "nrefs:1|case:mixed" in card.text
    assert "AutoModelForSeq2SeqLM" in card.text


def test_the_licence_is_the_embedded_samples_or_left_to_the_publisher():
    from transformer_mt.config import DataConfig
    from transformer_mt.export.model_card import _data_section, _licence

    assert _licence(DataConfig(source="sample")) == ("cc-by-2.0", [])
    assert "tatoeba.org" in _data_section(DataConfig(source="sample"))
    files = DataConfig(source="files", files=["/data/wmt.en", "/data/wmt.fr"])
    assert _licence(files) == ("other", []) and "not known to the exporter" in _data_section(files)


def test_power_exponent():
    assert power_exponent(DecodeConfig(length_penalty="power", alpha=0.8), [10, 20]) == 0.8
    assert power_exponent(DecodeConfig(alpha=0.6), [9, 11, 13]) == pytest.approx(0.6 * 11 / 16, abs=1e-4)
    assert power_exponent(DecodeConfig(alpha=0.6), []) == 0.6


def test_an_existing_export_is_replaced_only_with_force_and_a_failed_export_leaves_nothing(tmp_path, sample_pairs,
                                                                                         monkeypatch):
    run = tiny_run(tmp_path, sample_pairs[:500])
    check_force_and_failure(tmp_path, lambda out, force: export_transformers(run, None, out, force, evaluate=False),
                            lambda out: (out / "model.safetensors").is_file(), monkeypatch, PreTrainedModel,
                            "save_pretrained")


def test_without_transformers_installed_the_error_says_how_to_install_it(tmp_path, sample_pairs, monkeypatch):
    run = tiny_run(tmp_path, sample_pairs[:500])
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match=r"this needs transformers: pip install -e '\.\[hub\]'"):
        export_transformers(run, None, tmp_path / "hf")
