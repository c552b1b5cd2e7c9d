"""Exporting a run to CTranslate2: the model that comes out is the model that went in."""
import json
import sys
from dataclasses import replace

import ctranslate2
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.exports import check_force_and_failure
from tests.helpers.runs import tiny_run
from transformer_mt.config import Config
from transformer_mt.data.tokenizer import BOS, EOS
from transformer_mt.decoding.ctranslate2 import ExportedTranslator
from transformer_mt.decoding.ctranslate2_folder import META, read_meta, require_ctranslate2
from transformer_mt.decoding.pytorch import Translator
from transformer_mt.errors import UserError
from transformer_mt.export.ctranslate2 import export_ctranslate2

SHAPES = {
    "pre-norm, joint, tied": dict(),
    "post-norm": dict(norm_first=False),
    "separate vocabularies": dict(joint=False),
    "untied embeddings": dict(tie_embeddings=False),
}


@pytest.fixture(scope="module", params=list(SHAPES), ids=list(SHAPES))
def exported(request, tmp_path_factory, sample_pairs):
    root = tmp_path_factory.mktemp("export")
    run = tiny_run(root, sample_pairs[:500], **SHAPES[request.param])
    export_ctranslate2(run, None, root / "ct2", "float32")
    return run, root / "ct2"


def test_per_token_log_probabilities_equal_pytorch_teacher_forcing(exported, sample_pairs):
    run, folder = exported
    ours = Translator(run, device="cpu")
    theirs = ctranslate2.Translator(str(folder), device="cpu")
    pairs = sample_pairs[600:620]
    sources = ours.encode([s for s, _ in pairs])
    targets = [ours.tokenizers.tgt.encode(t)[:40] for _, t in pairs]
    src_vocab, tgt_vocab = ours.tokenizers.src.tokens(), ours.tokenizers.tgt.tokens()
    scored = theirs.score_batch([[src_vocab[i] for i in s] for s in sources],
                                [[tgt_vocab[i] for i in t] for t in targets],
                                max_input_length=0)
    for source, target, result in zip(sources, targets, scored):
        with torch.no_grad():
            logits = ours.model(torch.tensor([source]), torch.tensor([[BOS] + target]))
        expected = F.log_softmax(logits[0].float(), dim=-1).gather(1, torch.tensor([target + [EOS]]).T).squeeze(1)
        torch.testing.assert_close(torch.tensor(result.log_probs), expected, atol=1e-4, rtol=0)


def test_greedy_search_gives_our_tokens(exported, sample_pairs):
    run, folder = exported
    ours, theirs = Translator(run, device="cpu"), ExportedTranslator(folder, "cpu", threads=1)
    sentences = [s for s, _ in sample_pairs[600:640]]
    search = replace(ours.decode, beam_size=1, max_len_a=1.0, max_len_b=5)  # a random model stops at the limit
    expected = [h[0].text for h in ours.translate(sentences, search)]
    assert [h[0].text for h in theirs.translate(sentences, search)] == expected


def test_the_export_aligns_a_translation_to_its_source_as_pytorch_does(exported, sample_pairs):
    run, folder = exported
    ours, theirs = Translator(run, device="cpu"), ExportedTranslator(folder, "cpu", threads=1)
    sentences = [s for s, _ in sample_pairs[640:660]]
    translations = [t for _, t in sample_pairs[640:660]]  # any text aligns; a reference one has words
    sources = ours.encode(sentences)
    targets = [ours.tokenizers.tgt.encode(t)[: ours.max_positions - 1] for t in translations]
    for mine, its, target in zip(ours._attention(sources, targets), theirs._attention(sources, targets), targets):
        torch.testing.assert_close(torch.tensor(its[: len(target)]), torch.tensor(mine), atol=1e-4, rtol=0)
    assert theirs.align(sources, translations) == ours.align(sources, translations)
    for beam in (1, 4):  # the search's own attention (no second pass) aligns as the forced pass does
        search = replace(ours.decode, beam_size=beam, max_len_a=1.0, max_len_b=5)
        done = theirs.translate_encoded(sources, search, 1, align=[True] * len(sources))
        assert [d[0].alignment for d in done] == ours.align(sources, [d[0].text for d in done])


def test_the_export_folder_holds_model_tokenizers_and_what_decoding_needs(exported):
    run, folder = exported
    meta = read_meta(folder)
    assert meta.step == 7 and meta.checkpoint == str(run.last) and meta.max_positions == 48
    assert meta.decode_config == Config().decode and meta.quantization == "float32"
    assert {"model.bin", "config.json", META, "tokenizer-src.json",
            "tokenizer-tgt.json"} <= {p.name for p in folder.iterdir()}


def test_int8_export_translates(tmp_path, sample_pairs):
    run = tiny_run(tmp_path, sample_pairs[:500])
    export_ctranslate2(run, None, tmp_path / "int8", "int8")
    translator = ExportedTranslator(tmp_path / "int8", "cpu")
    assert translator.quantization == "int8"
    assert len(translator.translate(["Hello.", ""], replace(translator.decode, beam_size=2))) == 2


def test_an_existing_export_is_replaced_only_with_force_and_a_failed_export_leaves_nothing(tmp_path, sample_pairs,
                                                                                         monkeypatch):
    run = tiny_run(tmp_path, sample_pairs[:500])
    check_force_and_failure(tmp_path, lambda out, force: export_ctranslate2(run, None, out, "float32", force=force),
                            lambda out: read_meta(out).step == 7, monkeypatch, ctranslate2.specs.ModelSpec, "save")


def test_what_is_not_a_whole_export_of_ours_is_refused_in_one_line(tmp_path, sample_pairs):
    run = tiny_run(tmp_path, sample_pairs[:500])
    folder = tmp_path / "ct2"
    export_ctranslate2(run, None, folder, "float32")
    meta = json.loads((folder / META).read_text())
    (folder / META).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(UserError, match="exported in format 99, newer than this transformer-mt reads"):
        ExportedTranslator(folder)
    (folder / META).unlink()
    with pytest.raises(UserError, match="is not a transformer-mt export.*another tool"):
        ExportedTranslator(folder)
    (folder / META).write_text(json.dumps(meta))
    (folder / "tokenizer-tgt.json").unlink()
    with pytest.raises(UserError, match="incomplete: tokenizer-tgt.json is missing"):
        ExportedTranslator(folder)
    with pytest.raises(UserError, match="export folder not found"):
        ExportedTranslator(tmp_path / "nowhere")
    run.last.unlink()
    with pytest.raises(UserError, match="holds no checkpoint"):
        export_ctranslate2(run, None, tmp_path / "again", "float32")


@pytest.mark.skipif(ctranslate2.get_cuda_device_count() > 0, reason="a GPU runs float16")
def test_a_quantization_this_machine_cannot_run_is_refused(tmp_path, sample_pairs):
    run = tiny_run(tmp_path, sample_pairs[:500])
    with pytest.raises(UserError, match="--quantization float16 cannot run on this machine's cpu"):
        export_ctranslate2(run, None, tmp_path / "fp16", "float16")
    assert not (tmp_path / "fp16").exists()


def test_without_ctranslate2_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)
    with pytest.raises(UserError, match=r"pip install -e '.\[deploy\]'"):
        require_ctranslate2()


def test_a_sentence_past_its_limit_is_cut_to_it_as_ours_is(tmp_path, sample_pairs):
    """Sentences of one batch have different limits; CTranslate2 decodes the batch to the largest."""
    run = tiny_run(tmp_path, sample_pairs[:500])
    export_ctranslate2(run, None, tmp_path / "ct2", "float32")
    ours, theirs = Translator(run, device="cpu"), ExportedTranslator(tmp_path / "ct2", "cpu")
    sentences = ["Go.", "I think that we should leave before it starts to rain again tonight."]
    search = replace(ours.decode, beam_size=1, max_len_a=0.5, max_len_b=1)
    got, want = theirs.translate(sentences, search), ours.translate(sentences, search)
    assert [h[0].text for h in got] == [h[0].text for h in want]
    encoded = theirs.encode(sentences)
    limits = [int(0.5 * (len(ids) - 1) + 1 + 0.999) for ids in encoded]
    uncut = theirs.model.translate_batch([[theirs.src_tokens[t] for t in ids] for ids in encoded],
                                         **theirs._options(search, max(limits)))
    assert len(uncut[0].hypotheses[0]) > limits[0] + 1  # decoded past its own limit: the cut is needed


def test_a_checkpoint_named_alone_is_exported_with_its_own_runs_tokenizers(tmp_path, sample_pairs):
    """--checkpoint FILE without --run: the run folder above the checkpoint (as translate, evaluate and
    serve resolve it), not the latest run under --runs, whose tokenizers are another vocabulary."""
    import os
    import subprocess
    from pathlib import Path

    runs = tmp_path / "runs"
    tiny_run(runs, sample_pairs[:300]).root.rename(runs / "older")
    latest = tiny_run(runs, sample_pairs[300:700], joint=False)
    os.utime(latest.last)  # the latest run by its last checkpoint
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "scripts/export.py", "--runs", str(runs), "--checkpoint",
                             str(runs / "older" / "checkpoints" / "last.pt"), "--output", str(tmp_path / "out")],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("tokenizer-src.json", "tokenizer-tgt.json"):
        assert (tmp_path / "out" / name).read_bytes() == (runs / "older" / name).read_bytes(), name
    assert read_meta(tmp_path / "out").joint_vocab
