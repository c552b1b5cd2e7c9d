"""Train a tiny model on a few hundred pairs until it reproduces them, then use the CLIs as a user would."""
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers.runs import write_jsonl
from transformer_mt.data.store import open_store, read_manifest
from transformer_mt.data.tokenizer import EOS, Tokenizer

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
WITHOUT_TORCH = str(ROOT / "tests" / "helpers" / "without_torch.py")


def cli(*args, stdin=None, cwd=None):
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, cwd=cwd or ROOT,
                          env=ENV, timeout=600)


def memorisable_pairs(sample_pairs, count=240):
    """Short pairs with one translation per source, so that reproducing them is well defined."""
    seen, pairs = set(), []
    for en, fr in sample_pairs:
        if en not in seen and len(en.split()) <= 6:
            seen.add(en)
            pairs.append((en, fr))
    return pairs[:count]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample_pairs):
    root = tmp_path_factory.mktemp("e2e")
    pairs = memorisable_pairs(sample_pairs)
    corpus = write_jsonl(root / "corpus.jsonl", pairs)
    config = {
        "run": {"name": "memorise", "root": str(root / "runs")},
        "data": {"source": "files", "files": [str(corpus)], "valid_size": 10, "test_size": 10},
        "tokenizer": {"vocab_size": 600},
        "model": {"d_model": 128, "n_heads": 4, "encoder_layers": 2, "decoder_layers": 2, "d_ff": 256,
                  "dropout": 0.0, "max_positions": 64},
        "train": {"batch_tokens": 1200, "lr": 0.003, "warmup_steps": 60, "max_steps": 500, "label_smoothing": 0.0,
                  "log_every": 50, "valid_every": 250, "valid_max_sentences": 10, "precision": "fp32"},
        "decode": {"beam_size": 3},
    }
    path = root / "memorise.yaml"
    path.write_text(yaml.safe_dump(config))
    result = cli("scripts/train.py", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    run = root / "runs" / "memorise"
    store = open_store(run / "data" / "train", read_manifest(run / "data" / "train"))
    tokenizer = Tokenizer.load(run / "tokenizer-src.json")  # joint vocabulary
    train_pairs = [(tokenizer.decode(store.src(i)), tokenizer.decode(store.tgt(i))) for i in range(len(store))]
    return root, run, path, train_pairs


def test_run_folder_holds_everything(trained):
    _, run, _, _ = trained
    for name in ("config.yaml", "tokenizer-src.json", "tokenizer-tgt.json", "data/train/manifest.json", "data/test.fr",
                 "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert any(run.glob("events.out.tfevents.*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["d_model"] == 128 and saved["run"]["name"] == "memorise"


def test_reproduces_training_pairs_through_translate_cli(trained):
    root, run, _, train_pairs = trained
    sources = [en for en, _ in train_pairs[:60]]
    result = cli("scripts/translate.py", "--run", str(run), "--beam-size", "1", stdin="\n".join(sources) + "\n")
    assert result.returncode == 0, result.stderr
    outputs = result.stdout.splitlines()
    assert len(outputs) == len(sources)
    exact = sum(out == fr for out, (_, fr) in zip(outputs, train_pairs[:60]))
    assert exact >= 0.9 * len(sources), list(zip(outputs, train_pairs[:60]))[:10]
    # arguments, beam search and the latest-run default agree, in order, with an empty line kept empty
    args = cli("scripts/translate.py", "--runs", str(root / "runs"), sources[0], "", sources[1])
    assert args.returncode == 0, args.stderr
    assert args.stdout.splitlines() == [train_pairs[0][1], "", train_pairs[1][1]]
    assert "note:" not in args.stderr  # an empty input line is not an empty translation


def _mute_copy(run: Path, tmp_path: Path) -> tuple[Path, Path, int]:
    """A copy of the trained run whose best checkpoint emits EOS first: its output is forced to EOS."""
    mute = tmp_path / "mute"
    shutil.copytree(run, mute)
    path = mute / "checkpoints" / "best.pt"
    state = torch.load(path, weights_only=True)
    weights = state["model"]
    eos_row = weights["output.weight"][EOS].clone() * 100  # tied: the same row wherever it is saved
    for key in ("src_embed.weight", "tgt_embed.weight", "output.weight"):
        if key in weights:
            weights[key][EOS] = eos_row
    weights["decoder_norm.weight"].zero_()
    weights["decoder_norm.bias"].copy_(eos_row)  # every hidden state now points at EOS
    torch.save(state, path)
    return mute, path, state["state"]["step"]


def test_translate_says_why_translations_are_empty(trained, tmp_path):
    """A model that emits EOS first prints blank lines; the CLI says so on stderr, naming the
    checkpoint's step, and still succeeds."""
    _, run, _, train_pairs = trained
    mute, path, step = _mute_copy(run, tmp_path)
    result = cli("scripts/translate.py", "--run", str(mute), train_pairs[0][0], "", train_pairs[1][0])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["", "", ""]
    assert "note: 2 of 3 translations are empty" in result.stderr
    assert f"{path} is from step {step}" in result.stderr


def test_evaluate_says_why_translations_are_empty(trained, tmp_path):
    _, run, _, train_pairs = trained
    mute, path, step = _mute_copy(run, tmp_path)
    (tmp_path / "src.en").write_text(f"{train_pairs[0][0]}\n{train_pairs[1][0]}\n")
    (tmp_path / "ref.fr").write_text(f"{train_pairs[0][1]}\n{train_pairs[1][1]}\n")
    result = cli("scripts/evaluate.py", "--run", str(mute), "--src", str(tmp_path / "src.en"),
                 "--ref", str(tmp_path / "ref.fr"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["bleu"] == 0.0
    assert f"note: 2 of 2 translations are empty (the model stopped at once: {path} is from step {step}" \
        in result.stderr
    healthy = cli("scripts/evaluate.py", "--run", str(run), "--src", str(tmp_path / "src.en"),
                  "--ref", str(tmp_path / "ref.fr"), "--json")
    assert healthy.returncode == 0 and "note:" not in healthy.stderr


def test_nbest_prints_scores(trained):
    _, run, _, train_pairs = trained
    result = cli("scripts/translate.py", "--run", str(run), "--beam-size", "3", "--nbest", "3", train_pairs[0][0])
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[0] for line in lines] == ["0", "1", "2"]
    scores = [float(line[1]) for line in lines]
    assert scores == sorted(scores, reverse=True) and lines[0][2] == train_pairs[0][1]


def test_refuses_to_overwrite_a_trained_run(trained):
    _, run, config, _ = trained
    before = (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    result = cli("scripts/train.py", str(config))
    assert result.returncode == 2
    assert "train.resume=true" in result.stderr and "Traceback" not in result.stderr
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("args, message", [
    (["scripts/train.py", "configs/missing.yaml"], "config file not found"),
    (["scripts/train.py", "configs/tiny.yaml", "model.d_modle=3"], "unknown key 'model.d_modle'"),
    (["scripts/translate.py", "--run", "no/such/run", "Hello."], "run folder not found"),
    (["scripts/translate.py", "--checkpoint", "no/such.pt", "Hello."], "checkpoint not found"),
])
def test_bad_input_gets_one_line_and_nonzero_exit(args, message):
    """Answered before PyTorch loads (seconds): the scripts run with it unimportable."""
    result = cli(WITHOUT_TORCH, *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_make_translate_hands_the_text_over_as_typed():
    text = 'He said "hi" to l\'homme `date` -5'  # quotes, apostrophes and backticks reach the script unchanged
    show_argv = f"{sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", "translate", f"PY={show_argv}", f"TEXT={text}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["scripts/translate.py", "--", text]


@pytest.mark.parametrize("script, flags, message", [
    ("scripts/translate.py", ["--nbest", "4"], "--nbest must be between 1 and the beam size (3)"),  # the run's beam
    ("scripts/translate.py", ["--max-len-a", "-1"], "--max-len-a must be at least 0"),
    ("scripts/evaluate.py", ["--batch-size", "0"], "--batch-size must be at least 1"),
    ("scripts/evaluate.py", ["--output", "no-such-folder/hyp.txt"], "--output no-such-folder/hyp.txt: folder "
                                                                     "no-such-folder does not exist"),
    ("scripts/evaluate.py", ["--output", "tests"], "--output tests is a folder; name the file to write"),
    pytest.param("scripts/translate.py", ["--device", "cuda"], "--device is cuda but no CUDA GPU is visible",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")),
])
def test_bad_decoding_flags_get_one_line_and_nonzero_exit(trained, script, flags, message):
    result = cli(script, "--run", str(trained[1]), *flags, *(["Hello."] if "translate" in script else []))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1


def test_input_that_is_not_utf8_is_a_one_line_error(trained):
    result = subprocess.run([sys.executable, "scripts/translate.py", "--run", str(trained[1])],
                            input=b"Hello.\n\xff\xfe\n", capture_output=True, cwd=ROOT, env=ENV, timeout=600)
    assert result.returncode == 2 and result.stderr.decode() == "error: sentence 2 is not UTF-8 text\n"


def test_evaluate_refuses_an_empty_source_file(trained, tmp_path):
    (tmp_path / "empty.en").write_text("")
    (tmp_path / "empty.fr").write_text("")
    result = cli("scripts/evaluate.py", "--run", str(trained[1]), "--src", str(tmp_path / "empty.en"),
                 "--ref", str(tmp_path / "empty.fr"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path}/empty.en is empty: no sentences to score"


def test_translation_batches_default_to_the_runs_decode_batch_size(trained, monkeypatch):
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run
    translator = Translator(open_run(trained[1]), device="cpu")
    translator.config.decode.batch_size = 2
    sizes, search = [], translator._search
    monkeypatch.setattr(translator, "_search",
                        lambda batch, cfg, nbest: sizes.append(len(batch)) or search(batch, cfg, nbest))
    translator.translate(["Hello.", "Thanks.", "Go.", "I see.", "Wait."], replace(translator.decode, beam_size=1))
    assert sizes == [2, 2, 1]
    sizes.clear()
    translator.translate(["Hello.", "Thanks.", "Go."], replace(translator.decode, beam_size=1, batch_size=3))
    assert sizes == [3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no GPU")
@pytest.mark.parametrize("override, message", [
    ("train.device=cuda", "no CUDA GPU is visible"),
    ("train.precision=fp16", "fp16 needs CUDA"),
])
def test_impossible_device_fails_before_writing_anything(tmp_path, override, message):
    result = cli("scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path / 'runs'}", override)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "preparing the corpus" not in result.stdout and not (tmp_path / "runs").exists()


def test_unwritable_run_root_is_a_one_line_error(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = cli("scripts/train.py", "configs/tiny.yaml", f"run.root={tmp_path / 'a_file'}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: cannot create the run folder {tmp_path}/a_file/tiny: "
                                                  f"Not a directory"]


def test_a_checkpoint_copied_out_of_its_run_needs_the_run_named(trained, tmp_path):
    _, run, _, train_pairs = trained
    copy = tmp_path / "model.pt"
    copy.write_bytes((run / "checkpoints" / "last.pt").read_bytes())
    alone = cli("scripts/translate.py", "--checkpoint", str(copy), "Hello.")
    assert alone.returncode == 2 and alone.stderr.strip() == (
        f"error: {copy} is not in a run folder's checkpoints/: name its run folder with --run")
    named = cli("scripts/translate.py", "--checkpoint", str(copy), "--run", str(run), train_pairs[0][0])
    assert named.returncode == 0 and named.stdout.strip() == train_pairs[0][1]


def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path):
    _, run, _, _ = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes((run / "checkpoints" / "last.pt").read_bytes()[:1000])
    result = cli("scripts/translate.py", "--run", str(run), "--checkpoint", str(broken), "Hello.")
    assert result.returncode == 2 and "corrupt or truncated" in result.stderr and "Traceback" not in result.stderr


def test_overlong_sentence_is_truncated_with_a_warning(trained):
    _, run, _, _ = trained
    result = cli("scripts/translate.py", "--run", str(run), " ".join(["word"] * 200))
    assert result.returncode == 0
    assert "truncated" in result.stderr and len(result.stdout.splitlines()) == 1


def test_evaluate_cli_matches_sacrebleu_on_model_output(trained, tmp_path):
    import json

    import sacrebleu

    _, run, _, _ = trained
    hyp_file = tmp_path / "hyp.fr"
    result = cli("scripts/evaluate.py", "--run", str(run), "--beam-size", "2", "--output", str(hyp_file), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"bleu", "chrf", "signature", "sentences", "seconds"} <= report.keys()
    hyps = hyp_file.read_text().splitlines()
    refs = (run / "data" / "test.fr").read_text().splitlines()
    assert len(hyps) == len(refs) == report["sentences"]
    assert report["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a", smooth_method="none").score, abs=0.01)
    assert report["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=0.01)


def test_attention_heatmaps_in_tensorboard_and_from_translate(trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run, _, train_pairs = trained
    events = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert "valid/cross_attention" in events.Tags()["images"]
    assert {"valid/bleu", "valid/chrf", "valid/loss", "valid/nll", "valid/ppl", "train/loss", "train/lr",
            "train/tokens_per_sec"} <= set(events.Tags()["scalars"])
    picture = tmp_path / "attention.png"
    result = cli("scripts/translate.py", "--run", str(run), "--attention", str(picture), train_pairs[0][0])
    assert result.returncode == 0, result.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout.strip() == train_pairs[0][1]


@pytest.mark.parametrize("name, message", [
    ("missing/attention.png", "folder {tmp}/missing does not exist"),
    (".", "is a folder; name the file to write"),
    ("attention", "name an image file ending in ."),  # matplotlib would have written attention.png
    ("attention.xyz", "name an image file ending in ."),
])
def test_a_bad_attention_path_fails_before_the_model_loads(tmp_path, name, message):
    pytest.importorskip("matplotlib")
    path = tmp_path / name
    result = cli("scripts/translate.py", "--run", str(tmp_path / "no-run"), "--attention", str(path), "Hello.")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: --attention {path}")
    assert message.format(tmp=tmp_path) in lines[0]  # not "run folder not found": checked first
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bf16_decoding_casts_the_weights_and_keeps_the_translations(trained):
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run
    _, run, _, train_pairs = trained
    sources = [en for en, _ in train_pairs[:40]]
    fp32, bf16 = (Translator(open_run(run), device="cpu", precision=p) for p in ("fp32", "bf16"))
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    search = replace(fp32.decode, beam_size=3)
    full = [t[0].text for t in fp32.translate(sources, search)]
    half = [t[0].text for t in bf16.translate(sources, search)]
    assert sum(a == b for a, b in zip(full, half)) >= 0.9 * len(sources), list(zip(full, half))


def test_bf16_decoding_on_a_cpu_without_bf16_notes_it_once_and_prints_nothing(trained, monkeypatch, capsys):
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.model import device
    from transformer_mt.run_folder import open_run
    monkeypatch.setattr(device, "cpu_supports_bf16", lambda: False)
    bf16 = Translator(open_run(trained[1]), device="cpu", precision="bf16")
    assert len(bf16.notes) == 1 and bf16.notes[0].startswith("warning: bf16 on this CPU is emulated")
    assert Translator(open_run(trained[1]), device="cpu", precision="fp32").notes == []
    assert capsys.readouterr() == ("", "")


@pytest.fixture(scope="module")
def export(trained):
    root, run, _, _ = trained
    result = cli("scripts/export.py", "--run", str(run), "--output", str(root / "exports" / "memorise-ct2"))
    assert result.returncode == 0, result.stderr
    return root / "exports" / "memorise-ct2"


@pytest.mark.parametrize("beam, penalty", [(1, "gnmt"), (3, "gnmt"), (3, "power")])
def test_the_fp32_export_decodes_as_the_pytorch_model_does(trained, export, beam, penalty):
    """Test split and training pairs, every hypothesis of the n-best list (GNMT: the best one); scores on
    the training pairs it reproduces, which end in EOS (at the length limit, where ours forces EOS,
    CTranslate2 scores the token it chose instead)."""

    from transformer_mt.data.corpus import read_split
    from transformer_mt.decoding.ctranslate2 import ExportedTranslator
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run

    _, run, _, train_pairs = trained
    ours, theirs = Translator(open_run(run), device="cpu"), ExportedTranslator(export, "cpu", threads=1)
    sentences = [s for s, _ in read_split(run / "data" / "test.en", run / "data" / "test.fr") + train_pairs[:80]]
    search = replace(ours.decode, beam_size=beam, length_penalty=penalty)
    want, got = ours.translate(sentences, search, nbest=beam), theirs.translate(sentences, search, nbest=beam)
    assert [h[0].text for h in got] == [h[0].text for h in want]
    if penalty == "power" or beam == 1:
        assert [[h.text for h in hyps] for hyps in got] == [[h.text for h in hyps] for hyps in want]
    reproduced = [(m, e) for (_, fr), m, e in zip(train_pairs[:80], want[-80:], got[-80:]) if m[0].text == fr]
    assert len(reproduced) > 60
    for mine, exported in reproduced:
        assert exported[0].score == pytest.approx(mine[0].score, abs=1e-4)


def test_translate_and_evaluate_take_an_export_as_they_take_a_run(trained, export, tmp_path):
    root, run, _, train_pairs = trained
    sources = [en for en, _ in train_pairs[:3]]
    by_run = cli("scripts/translate.py", "--run", str(run), stdin="\n".join([sources[0], "", *sources[1:]]) + "\n")
    # An export is decoded without PyTorch: the script runs with torch unimportable.
    by_export = cli(WITHOUT_TORCH, "scripts/translate.py", "--model", str(export), "--threads", "1",
                    stdin="\n".join([sources[0], "", *sources[1:]]) + "\n")
    assert by_export.returncode == 0, by_export.stderr
    assert by_export.stdout == by_run.stdout and by_run.stdout.splitlines()[1] == ""
    nbest = cli(WITHOUT_TORCH, "scripts/translate.py", "--model", str(export), "--beam-size", "3", "--nbest", "3",
                sources[0])
    lines = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert [rank for rank, _, _ in lines] == ["0", "1", "2"] and lines[0][2] == train_pairs[0][1]
    (tmp_path / "src.en").write_text("\n".join(sources) + "\n")
    (tmp_path / "ref.fr").write_text("\n".join(fr for _, fr in train_pairs[:3]) + "\n")
    scores = [json.loads(cli("scripts/evaluate.py", *model, "--src", str(tmp_path / "src.en"), "--ref",
                             str(tmp_path / "ref.fr"), "--json", "--output", str(tmp_path / f"hyp{i}.txt")).stdout)
              for i, model in enumerate((["--run", str(run)], ["--model", str(export)]))]
    assert scores[0]["bleu"] == scores[1]["bleu"] and scores[1]["step"] == scores[0]["step"]
    assert (tmp_path / "hyp0.txt").read_text() == (tmp_path / "hyp1.txt").read_text()


@pytest.mark.parametrize("script, flags, message", [
    ("scripts/translate.py", ["--run", "RUN"], "--model and --run do not go together"),
    ("scripts/translate.py", ["--precision", "bf16"], "--model and --precision do not go together"),
    ("scripts/translate.py", ["--attention", "a.png"], "--attention needs a run's PyTorch model"),
    ("scripts/translate.py", ["--threads", "0"], "--threads must be at least 1"),
    ("scripts/evaluate.py", [], "an export holds no test split: give --src and --ref with --model"),
])
def test_export_flags_that_do_not_fit_are_one_line_errors(trained, export, script, flags, message):
    flags = [str(trained[1]) if flag == "RUN" else flag for flag in flags]
    result = cli(WITHOUT_TORCH, script, "--model", str(export), *flags, *(["Hello."] if "translate" in script else []))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1


def test_export_refuses_to_overwrite_without_force(trained, export):
    result = cli("scripts/export.py", "--run", str(trained[1]), "--output", str(export))
    assert result.returncode == 2 and "exists and is not empty: pass --force" in result.stderr
    again = cli("scripts/export.py", "--run", str(trained[1]), "--output", str(export), "--force")
    assert again.returncode == 0 and "exported" in again.stdout


@pytest.fixture(scope="module")
def hf_export(trained):
    root, run, _, _ = trained
    result = cli("scripts/export.py", "--run", str(run), "--format", "transformers", "--output",
                 str(root / "exports" / "hf"))
    assert result.returncode == 0, result.stderr
    assert "as PegasusForConditionalGeneration" in result.stdout and "test split BLEU" in result.stdout
    return root / "exports" / "hf"


@pytest.mark.parametrize("beam, penalty", [(1, "gnmt"), (3, "power")])
def test_the_transformers_export_generates_what_the_pytorch_model_translates(trained, hf_export, beam, penalty):
    """`scripts/export.py --format transformers`, then generate() with transformers alone on the test split
    and training pairs: greedy as the run's config says, beam 3 with the power penalty, which generate
    shares (its length^p, EOS counted); ours per-sentence length limit as max_new_tokens."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from transformer_mt.data.corpus import read_split
    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run

    _, run, _, train_pairs = trained
    ours = Translator(open_run(run), device="cpu")
    search = replace(ours.decode, beam_size=beam, length_penalty=penalty)
    sentences = [s for s, _ in read_split(run / "data" / "test.en", run / "data" / "test.fr") + train_pairs[:80]]
    want = [h[0].text for h in ours.translate(sentences, search)]
    tok, model = AutoTokenizer.from_pretrained(hf_export), AutoModelForSeq2SeqLM.from_pretrained(hf_export)
    got = [""] * len(sentences)
    by_length = {}  # sentences of one source length share ours per-sentence limit: one generate call each
    for i, ids in enumerate(tok(sentences, truncation=True).input_ids):
        by_length.setdefault(len(ids) - 1, []).append(i)
    for length, group in by_length.items():
        batch = tok([sentences[i] for i in group], return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            out = model.eval().generate(**batch, num_beams=beam, length_penalty=search.alpha,
                                        max_new_tokens=math.ceil(length * search.max_len_a + search.max_len_b) + 1)
        for i, text in zip(group, tok.batch_decode(out, skip_special_tokens=True)):
            got[i] = text
    assert got == want
    assert sum(text == fr for text, (_, fr) in zip(got[-80:], train_pairs[:80])) > 60


def test_the_model_cards_snippet_translates_with_transformers_alone(trained, hf_export):
    """The card's "How to use" code, run as written in the export folder by an interpreter that cannot
    import this project, prints what ours translates with the folder's generation settings."""
    import ast

    from huggingface_hub import ModelCard
    from transformers import GenerationConfig

    from transformer_mt.decoding.pytorch import Translator
    from transformer_mt.run_folder import open_run

    snippet = ModelCard.load(hf_export / "README.md").text.split("```python\n")[1].split("```")[0]
    blocked = 'import sys; sys.modules["transformer_mt"] = None  # any import of it fails\n'
    result = subprocess.run([sys.executable, "-c", blocked + snippet], capture_output=True, text=True,
                            cwd=hf_export, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    gen = GenerationConfig.from_pretrained(hf_export)
    ours = Translator(open_run(trained[1]), device="cpu")
    search = replace(ours.decode, beam_size=gen.num_beams, length_penalty="power", alpha=gen.length_penalty,
                     max_len_a=0.0, max_len_b=ours.model.max_output_len)
    want = [h[0].text for h in ours.translate(["I am hungry."], search)]
    assert ast.literal_eval(result.stdout.strip().splitlines()[-1]) == want


def test_the_export_script_refuses_flags_of_the_other_format(trained):
    run = str(trained[1])
    for flags, message in ((["--format", "transformers", "--quantization", "int8"],
                            "--quantization is for --format ctranslate2"),
                           (["--no-evaluate"], "--no-evaluate is for --format transformers")):
        result = cli("scripts/export.py", "--run", run, *flags)
        assert result.returncode == 2 and result.stderr.startswith(f"error: {message}")


def test_bench_export_measures_the_agreement_on_the_test_split(trained, hf_export, tmp_path):
    run = trained[1]
    result = cli("scripts/bench_export.py", "--run", str(run), "--export", str(hf_export), "--json",
                 str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b.json").read_text())
    greedy, beam = report["results"]
    assert greedy["search"] == "greedy" and greedy["identical_share"] == 1.0 and greedy["sentences"] == 10
    assert greedy["bleu_ours"] == greedy["bleu_transformers"] and beam["search"].startswith("beam 3: ours gnmt")
    assert "| greedy | 10/10 (100.00 %) |" in result.stdout
