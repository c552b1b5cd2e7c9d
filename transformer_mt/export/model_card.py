"""The model card (README.md) of a `transformers` export: what the model was trained on and under which
licence, how, how well it translates its run's test split, and how to use it. Written with
huggingface_hub's ModelCard, whose metadata block the Hub reads (language, licence, model-index)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig
from ..data.corpus import read_held_out
from ..decoding.scores import corpus_scores
from ..model.checkpoint import Trained
from ..run_folder import RunPaths, lineage_markdown, read_lineage

SAMPLE_CORPUS = ("the Tatoeba English–French sample embedded in transformer-mt (140,000 pairs from "
                 "manythings.org/anki)")
SAMPLE_LICENCE = ("CC-BY 2.0 FR: attribution \"www.manythings.org/anki and tatoeba.org\" "
                  "(http://creativecommons.org/licenses/by/2.0)")


@dataclass
class Evaluation:
    bleu: float
    chrf: float
    signature: str
    sentences: int
    beam_size: int
    length_penalty: str
    alpha: float


def evaluate_test_split(run: RunPaths, checkpoint: Path) -> Evaluation | None:
    """The checkpoint's corpus BLEU and chrF on the run's own test split, decoded with the run's decode
    section by our PyTorch decoder (as `evaluate.py --run`); None if the run folder has no test split."""
    from ..decoding.pytorch import Translator

    translator = Translator(run, checkpoint, device="cpu")
    pairs = read_held_out(run, "test", translator.config.data)
    if not pairs:
        return None
    sources, references = [s for s, _ in pairs], [r for _, r in pairs]
    hypotheses = [hyps[0].text for hyps in translator.translate(sources)]
    scores = corpus_scores(hypotheses, [references])
    decode = translator.decode
    return Evaluation(round(scores.bleu, 2), round(scores.chrf, 2), scores.signature, len(sources),
                      decode.beam_size, decode.length_penalty, decode.alpha)


def model_card(trained: Trained, model_class: str, shared_ids: bool, evaluation: Evaluation | None,
               length_penalty: float):
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    config = trained.config
    name = trained.run.root.name
    licence, datasets = _licence(config.data)
    results = [] if evaluation is None else [
        EvalResult(task_type="translation", task_name=f"Translation {config.data.src_lang}-{config.data.tgt_lang}",
                   dataset_type=datasets[0] if datasets else "custom", dataset_name=f"{name}: held-out test split",
                   metric_type=metric, metric_name=label, metric_value=value)
        for metric, label, value in (("bleu", "BLEU", evaluation.bleu), ("chrf", "chrF", evaluation.chrf))]
    data = ModelCardData(language=[config.data.src_lang, config.data.tgt_lang], license=licence,
                         library_name="transformers", pipeline_tag="translation", tags=["translation",
                                                                                        "transformer-mt"],
                         datasets=datasets or None, model_name=name, eval_results=results or None)
    sections = [_summary(trained, model_class), _lineage_section(trained), _data_section(config.data),
                _training_section(trained), _results_section(evaluation, length_penalty), _usage_section(shared_ids)]
    body = "\n\n".join(section for section in sections if section)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _licence(data: DataConfig) -> tuple[str, list[str]]:
    """The Hub's licence id and dataset ids: known for the embedded sample; for anything else the data's
    own terms apply, which only the person publishing knows."""
    sources = [data.reading(corpus) for corpus in data.mixture()]
    if all(source.source == "sample" for source in sources):
        return "cc-by-2.0", []
    return "other", [s.dataset for s in sources if s.source == "hub" and not Path(s.dataset).exists()]


def _summary(trained: Trained, model_class: str) -> str:
    m = trained.config.model
    norm = "pre-norm" if m.norm_first else "post-norm (the paper's)"
    return (f"# {trained.run.root.name}: {trained.config.data.src_lang}→{trained.config.data.tgt_lang} translation\n\n"
            f"An encoder–decoder Transformer (*Attention Is All You Need*) trained from scratch with "
            f"transformer-mt, exported exactly to `{model_class}`: {m.encoder_layers}+"
            f"{m.decoder_layers} layers, d_model {m.d_model}, {m.n_heads} heads, feed-forward {m.d_ff}, {norm}, "
            f"sinusoidal positions, at most {m.max_positions} tokens a side. Checkpoint `{trained.path.name}`, "
            f"step {trained.step}.")


def _lineage_section(trained: Trained) -> str | None:
    """Where a fine-tuned model comes from: its parent, and the parent's parents."""
    lineage = read_lineage(trained.run)
    return f"## Lineage\n\n{lineage_markdown(lineage)}" if lineage else None


def _data_section(data: DataConfig) -> str:
    described = [(corpus, *_corpus_and_licence(data.reading(corpus))) for corpus in data.mixture()]
    limit = f", at most {data.max_pairs:,} pairs" if data.max_pairs else ""
    filters = (f"pairs with a side over {data.max_words} words or a length ratio over {data.max_length_ratio} "
               f"dropped; {data.valid_size:,} validation and {data.test_size:,} test source sentences held out by a "
               f"seeded hash (seed {data.seed})")
    if not data.mixed:
        _, corpus, licence = described[0]
        return f"## Data\n\n- Corpus: {corpus}{limit}; {filters}.\n- Licence: {licence}."
    corpora = "; ".join(f"{c.name}: {text}, weight {c.weight:g}" for c, text, _ in described)
    licences = "; ".join(f"{c.name}: {licence}" for c, _, licence in described)
    return (f"## Data\n\n- Corpora, each epoch drawn from them in proportion to their weights: {corpora}. From each "
            f"corpus{limit}: {filters}, none of them in any corpus's training pairs.\n- Licences: {licences}.")


def _corpus_and_licence(data: DataConfig) -> tuple[str, str]:
    if data.source == "sample":
        return SAMPLE_CORPUS, SAMPLE_LICENCE
    if data.source == "hub":
        revision = f" at revision {data.revision}" if data.revision else ""
        return (f"`{data.dataset}` (`{data.dataset_config}`{revision})",
                f"the terms of `{data.dataset}` apply: see its dataset card, and set `license` above to match")
    return (", ".join(f"`{Path(f).name}`" for f in data.files),
            "not known to the exporter: state the data's licence here and in `license` above before publishing")


def _training_section(trained: Trained) -> str:
    t, tok, m = trained.config.train, trained.config.tokenizer, trained.config.model
    vocab = "one joint" if tok.joint else "separate source and target"
    return (f"## Training\n\n- Byte-level BPE, {vocab} vocabulary of {tok.vocab_size:,} tokens; embeddings "
            f"{'tied' if m.tie_embeddings else 'untied'}.\n- {t.optimizer} (betas {t.adam_betas}, eps {t.adam_eps}, "
            f"weight decay {t.weight_decay}), peak learning rate {t.lr} after {t.warmup_steps} warm-up steps "
            f"(inverse square root), {t.batch_tokens:,} tokens a batch × {t.accumulate} accumulated, label "
            f"smoothing {t.label_smoothing}, dropout {m.dropout}, clipping {t.clip_norm}, precision {t.precision}; "
            f"{trained.step:,} updates.")


def _results_section(evaluation: Evaluation | None, length_penalty: float) -> str:
    if evaluation is None:
        return "## Results\n\nNot evaluated at export (the run folder holds no test split, or it was skipped)."
    search = ("greedy search" if evaluation.beam_size == 1 else
              f"beam {evaluation.beam_size}, {evaluation.length_penalty} length penalty α={evaluation.alpha}")
    return (f"## Results\n\nOn the run's held-out test split ({evaluation.sentences:,} sentences), decoded by "
            f"transformer-mt ({search}):\n\n| BLEU | chrF |\n|---|---|\n| {evaluation.bleu:.2f} | "
            f"{evaluation.chrf:.2f} |\n\nsacreBLEU signature: `{evaluation.signature}`. `generate()` with this "
            f"folder's generation settings gives the same greedy translations; its beam search ranks hypotheses "
            f"by length^{length_penalty}, which equals transformer-mt's ranking for the power penalty and "
            f"approximates GNMT's, so a few beam outputs can differ.")


def _usage_section(shared_ids: bool) -> str:
    note = "" if shared_ids else (
        "\n\nThe vocabulary holds the source tokens, then the target tokens: generated ids are target tokens "
        "and decode as text with the same tokenizer.")
    return ("## How to use\n\n```python\nfrom transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
            "path = \".\"  # this folder, or the Hub repository it was uploaded to (\"USER/NAME\")\n"
            "tok = AutoTokenizer.from_pretrained(path)\nmodel = AutoModelForSeq2SeqLM.from_pretrained(path)\n"
            "batch = tok([\"I am hungry.\"], return_tensors=\"pt\", padding=True, truncation=True)\n"
            "print(tok.batch_decode(model.generate(**batch), skip_special_tokens=True))\n```\n\n"
            "Pass `max_new_tokens` to bound the output (the default limit is the model's positions), and "
            "`num_beams=1` for greedy search. With transformers 4.x, `pipeline(\"translation\", model=path)` "
            f"works too (5 removed the translation pipeline).{note}")
