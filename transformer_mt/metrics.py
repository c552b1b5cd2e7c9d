"""Corpus BLEU and chrF on detokenised text, through torchmetrics' sacreBLEU implementation."""
from __future__ import annotations

from dataclasses import dataclass

import torchmetrics
from torchmetrics.text import CHRFScore, SacreBLEUScore


@dataclass
class Scores:
    bleu: float
    chrf: float
    signature: str


def corpus_scores(hypotheses: list[str], references: list[list[str]]) -> Scores:
    """`references[i]` holds every reference stream's i-th sentence (sacrebleu's layout).

    BLEU: 13a tokenisation, mixed case, no smoothing (sacrebleu smooth_method="none"); chrF: character 6-grams, β=2, no word
    n-grams — sacrebleu's settings, so the numbers compare with published ones.
    """
    per_sentence = [list(refs) for refs in zip(*references)]
    bleu = SacreBLEUScore(tokenize="13a", smooth=False)(hypotheses, per_sentence)
    chrf = CHRFScore(n_char_order=6, n_word_order=0, beta=2.0)(hypotheses, per_sentence)
    signature = (f"nrefs:{len(references)}|case:mixed|eff:no|tok:13a|smooth:none|chrF:c6w0b2"
                 f"|torchmetrics:{torchmetrics.__version__}")
    return Scores(bleu=float(bleu) * 100, chrf=float(chrf) * 100, signature=signature)
