"""How closely a `transformers` export (export/transformers.py) translates as our decoder does, on a run's
test split: the share of identical lines and the BLEU of each, greedy and with the run's beam, `generate`
called as a user calls it (the folder's generation settings, batches of padded sentences)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..data.corpus import read_held_out
from ..decoding.pytorch import Translator
from ..decoding.scores import corpus_scores


@dataclass
class Agreement:
    search: str
    sentences: int
    identical: int
    bleu_ours: float
    bleu_transformers: float
    chrf_ours: float
    chrf_transformers: float
    seconds_ours: float
    seconds_transformers: float
    differing: list[dict[str, str]]  # the first few lines that differ: source, ours, theirs

    @property
    def identical_share(self) -> float:
        return self.identical / self.sentences


def generate_texts(folder: Path, sentences: list[str], beam_size: int, batch_size: int = 64) -> list[str]:
    """`generate` over length-sorted batches, results in input order."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    texts = [""] * len(sentences)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = tok([sentences[i] for i in chunk], return_tensors="pt", padding=True, truncation=True)
        with torch.no_grad():
            out = model.generate(**batch, num_beams=beam_size)
        for i, text in zip(chunk, tok.batch_decode(out, skip_special_tokens=True)):
            texts[i] = text
    return texts


def measure(translator: Translator, folder: Path, beam_size: int, sources: list[str],
            references: list[str]) -> Agreement:
    decode = replace(translator.decode, beam_size=beam_size)
    started = time.perf_counter()
    ours = [hyps[0].text for hyps in translator.translate(sources, decode)]
    middle = time.perf_counter()
    theirs = generate_texts(folder, sources, beam_size)
    ended = time.perf_counter()
    a, b = corpus_scores(ours, [references]), corpus_scores(theirs, [references])
    differing = [{"source": s, "ours": o, "transformers": t} for s, o, t in zip(sources, ours, theirs) if o != t]
    from transformers import GenerationConfig

    exponent = GenerationConfig.from_pretrained(folder).length_penalty
    name = ("greedy" if beam_size == 1 else
            f"beam {beam_size}: ours {decode.length_penalty} α={decode.alpha}, generate length^{exponent}")
    return Agreement(name, len(sources), len(sources) - len(differing), round(a.bleu, 2), round(b.bleu, 2),
                     round(a.chrf, 2), round(b.chrf, 2), round(middle - started, 1), round(ended - middle, 1),
                     differing[:10])


def test_split(translator: Translator) -> tuple[list[str], list[str]]:
    pairs = read_held_out(translator.run, "test", translator.config.data)
    return [s for s, _ in pairs], [r for _, r in pairs]
